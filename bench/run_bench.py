#!/usr/bin/env python3
"""Yokan vs Redis, side by side, in one run.

    python3 bench/run_bench.py [--quick] [--json PATH]

Starts its own redis-server and Yokan providers (map backend) on loopback,
pins every process with sched_setaffinity, runs the same workloads against
each, prints one table (ratio > 1 means Yokan is better) plus the physical
limits measured in the same run (memcpy, UCX round trip), and writes JSON.
See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "client_worker.py")
SERVER = os.path.join(HERE, "yokan_server.py")
PROVIDER_ID = 42

NORMAL = {
    "runs": 5,
    "single_count": 5000,
    "single_warmup": 1000,
    "same_cpu_runs": 3,
    "loop_budget_s": 4.0,
    "same_cpu_loop_budget_s": 1.0,
    "batches_per_run": 20,
    "batch_warmup": 3,
    "large_mib": [1, 64],
    "large_reps": [30, 3],
    "memcpy_mib": 64,
    "memcpy_reps": 5,
    "list_keys": 100_000,
    "list_page": 1000,
    "window_s": 2.0,
    "window_runs": 3,
    "window_keys": 100,
    "window_max_ops": 2_000_000,
    "ucx_iters": 100_000,
    "ucx_tcp_iters": 20_000,
    "ucx_timeout_s": 20,
    "worker_timeout_s": 180,
}

QUICK = dict(
    NORMAL,
    runs=3,
    single_count=1500,
    single_warmup=300,
    same_cpu_runs=2,
    loop_budget_s=1.5,
    same_cpu_loop_budget_s=0.3,
    batches_per_run=5,
    batch_warmup=1,
    large_reps=[10, 1],
    memcpy_reps=3,
    window_s=0.75,
    window_runs=2,
    ucx_iters=20_000,
    ucx_timeout_s=5,
    worker_timeout_s=90,
)


# ---------------------------------------------------------------------------
# Processes


def pinned(cpus):
    """preexec_fn pinning the child (and every thread it will start) to cpus."""
    if cpus is None:
        return None
    cpus = set(cpus)
    return lambda: os.sched_setaffinity(0, cpus)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readline_timeout(stream, timeout_s):
    """One line from a child's pipe, or None after timeout_s."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        return None
    return stream.readline()


def stop(proc, timeout_s=10):
    """SIGTERM one child we started, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class RedisServer:
    def __init__(self, cpus):
        self.port = free_port()
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pinned(cpus),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        stop(self.proc)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def spec(self):
        return {"kind": "redis", "port": self.port}

    def close(self):
        stop(self.proc)


class YokanServer:
    def __init__(self, protocol, cpus):
        self.protocol = protocol
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, protocol, str(PROVIDER_ID)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(cpus),
        )
        line = readline_timeout(self.proc.stdout, 30)
        if not line:
            stop(self.proc)
            err = self.proc.stderr.read()[-500:] if self.proc.stderr else ""
            raise RuntimeError(f"yokan server ({protocol}) printed no address: {err}")
        self.address = line.strip()

    def spec(self, engine_config=None):
        return {
            "kind": "yokan",
            "protocol": self.protocol,
            "address": self.address,
            "provider_id": PROVIDER_ID,
            "engine_config": engine_config,
        }

    def close(self):
        stop(self.proc)


class YokanDaemon:
    """A yokan-server (tcp, loopback) serving `n` map providers, ids
    PROVIDER_ID .. PROVIDER_ID + n - 1."""

    def __init__(self, n, cpus, workdir):
        config = os.path.join(workdir, f"yokan-server-{n}-{len(os.listdir(workdir))}.json")
        with open(config, "w") as f:
            json.dump(
                {
                    "providers": [
                        {
                            "name": f"shard{i}",
                            "provider_id": PROVIDER_ID + i,
                            "config": {"database": {"type": "map"}},
                        }
                        for i in range(n)
                    ]
                },
                f,
            )
        self.ids = [PROVIDER_ID + i for i in range(n)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mochi.yokan.server", "tcp", "-c", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(cpus),
        )
        line = readline_timeout(self.proc.stdout, 30)
        if not line or not line.startswith("yokan-server running at "):
            stop(self.proc)
            raise RuntimeError(f"yokan-server did not start: {self.proc.stderr.read()[-500:]}")
        self.address = line.split(" at ", 1)[1].strip()

    def close(self):
        stop(self.proc)


# Rows of section 6: (label, number of yokan-server processes, providers each).
SHARD_LAYOUTS = [
    ("1 provider (plain handle)", 1, 1),
    ("4 shards: 1 server x 4 providers", 1, 4),
    ("4 shards: 4 servers x 1 provider", 4, 1),
]


def run_shards(params, srv_cpu, cli_cpu, log):
    """Section 6: batches through a ShardedDatabase of 4 providers against a
    plain handle on one provider; every server on CPU srv_cpu, the client on
    cli_cpu, tcp engines on loopback (same-host: shared memory)."""
    import tempfile

    res = {}
    with tempfile.TemporaryDirectory(prefix="yokan-bench-") as workdir:
        for label, servers, per in SHARD_LAYOUTS:
            daemons = []
            try:
                for _ in range(servers):
                    daemons.append(YokanDaemon(per, [srv_cpu], workdir))
                pairs = [(d.address, pid) for d in daemons for pid in d.ids]
                if len(pairs) == 1:
                    spec = {
                        "kind": "yokan",
                        "protocol": "tcp",
                        "address": pairs[0][0],
                        "provider_id": pairs[0][1],
                    }
                else:
                    spec = {"kind": "yokan", "protocol": "tcp", "shards": pairs}
                log(f"shards: {label}")
                before = sum(process_cpu_s(d.proc.pid) for d in daemons)
                res[label] = run_worker(
                    {"mode": "run", "target": spec, "workloads": ["batch"], "params": params},
                    [cli_cpu],
                    params["worker_timeout_s"],
                )
                batch = res[label].get("batch")
                if batch and not batch.get("truncated"):
                    # CPU time per key moved, client and servers: unlike
                    # keys/s it does not move with the load of other
                    # processes on the machine (waiting is not counted,
                    # but the client's spinning on its reply is).
                    variants = [k for k, v in batch.items() if isinstance(v, dict) and "runs" in v]
                    nbatches = params["batch_warmup"] + params["runs"] * params["batches_per_run"]
                    keys = 3 * 1000 * nbatches * len(variants)
                    server_s = sum(process_cpu_s(d.proc.pid) for d in daemons) - before
                    batch["cpu_ns_per_key"] = {
                        "client": 1e9 * batch["cpu_s"] / keys,
                        "servers": 1e9 * server_s / keys,
                    }
            finally:
                for d in daemons:
                    d.close()
    return res


def process_cpu_s(pid):
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def render_shards(shards):
    """Section 6 as text: keys/s per layout and its ratio to the plain handle."""
    base_label = SHARD_LAYOUTS[0][0]
    lines = ["6. batches of 1000 over 4 shards vs one provider (keys/s; ratio to 1 provider)"]
    for op, metric, what in (
        ("put_multi/get_multi", "put_keys_s", "put_multi new keys"),
        ("put_multi/get_multi", "overwrite_keys_s", "put_multi overwrite"),
        ("put_multi/get_multi", "get_keys_s", "get_multi"),
        ("put_packed/get_packed", "put_keys_s", "put_packed new keys"),
        ("put_packed/get_packed", "get_keys_s", "get_packed"),
    ):
        base = dig(shards, base_label, "batch", op, metric)
        cells = []
        for label, _, _ in SHARD_LAYOUTS:
            v = dig(shards, label, "batch", op, metric)
            r = f" ({v / base:.2f}x)" if v and base and label != base_label else ""
            cells.append(f"{label}: {fmt_num(v, 'keys/s')}{r}")
        lines.append(f"  {what:<22} " + "; ".join(cells))
    cells = []
    for label, _, _ in SHARD_LAYOUTS:
        c = dig(shards, label, "batch", "cpu_ns_per_key")
        if c:
            cells.append(f"{label}: {c['client']:.0f} + {c['servers']:.0f}")
    if cells:
        lines.append(
            "  CPU ns per key, client + servers (all batch rows; load-independent): "
            + "; ".join(cells)
        )
    for label, r in shards.items():
        if isinstance(r, dict) and "error" in r:
            lines.append(f"  ERROR {label}: {r['error']}")
    return "\n".join(lines)


def run_worker(spec, cpus, timeout_s):
    """One client_worker.py in run mode; its JSON result or {"error": ...}."""
    try:
        cp = subprocess.run(
            [sys.executable, WORKER, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            preexec_fn=pinned(cpus),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout_s} s"}
    lines = cp.stdout.strip().splitlines()
    if cp.returncode != 0 or not lines:
        return {"error": f"worker exit {cp.returncode}: {cp.stderr.strip()[-600:]}"}
    return json.loads(lines[-1])


def run_windows(target_spec, client_cpus, params, nclients=2):
    """nclients workers doing single gets at once; aggregate ops/s per window."""
    spec = {"mode": "window", "target": target_spec, "params": params}
    procs = []
    try:
        for i, cpus in enumerate(client_cpus[:nclients]):
            s = dict(spec, tag="mn"[i % 2])
            procs.append(
                subprocess.Popen(
                    [sys.executable, WORKER, json.dumps(s)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    preexec_fn=pinned(cpus),
                )
            )
        for p in procs:
            if (readline_timeout(p.stdout, 60) or "").strip() != "ready":
                return {
                    "error": "a window worker did not get ready: "
                    + (p.stderr.read()[-400:] if p.poll() is not None else "timeout")
                }
        windows = []
        for _ in range(params["window_runs"]):
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            per = []
            for p in procs:
                line = readline_timeout(p.stdout, params["window_s"] + 30)
                if not line:
                    return {"error": "a window worker stopped answering"}
                per.append(json.loads(line))
            starts = [r["t_start"] for r in per]
            windows.append(
                {
                    "aggregate_ops_s": sum(r["ops_s"] for r in per),
                    "per_client_ops_s": [r["ops_s"] for r in per],
                    "start_skew_ms": (max(starts) - min(starts)) * 1e3,
                }
            )
        aggs = sorted(w["aggregate_ops_s"] for w in windows)
        return {"aggregate_ops_s": aggs[len(aggs) // 2], "windows": windows}
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    p.stdin.write("quit\n")
                    p.stdin.close()
                    p.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    stop(p)


# ---------------------------------------------------------------------------
# Physical limits and background load


def cpu_busy(cpus, seconds=1.0):
    """Busy fraction of each CPU over `seconds` while this benchmark is idle,
    i.e. the load other processes put on the machine (from /proc/stat)."""

    def sample():
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *vals = line.split()
                if name.startswith("cpu") and name != "cpu":
                    v = [int(x) for x in vals[:8]]
                    idle = v[3] + v[4]
                    out[int(name[3:])] = (sum(v) - idle, sum(v))
        return out

    try:
        a = sample()
        time.sleep(seconds)
        b = sample()
    except OSError:
        return {}
    busy = {}
    for c in cpus:
        if c in a and c in b and b[c][1] > a[c][1]:
            busy[c] = (b[c][0] - a[c][0]) / (b[c][1] - a[c][1])
    return busy


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def ucx_round_trip(tls, server_cpu, client_cpu, params):
    """ucx_perftest ucp_am_lat (8-byte active messages) on 127.0.0.1.

    ucx_perftest prints one-way latency (half the round trip); we report both.
    """
    exe = shutil.which("ucx_perftest")
    if exe is None:
        return {"error": "ucx_perftest not installed"}
    port = free_port()
    env = dict(os.environ, UCX_TLS=tls)
    timeout = params["ucx_timeout_s"]
    iters = params["ucx_iters"]
    srv = subprocess.Popen(
        [exe, "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned([server_cpu]),
    )
    try:
        time.sleep(0.5)
        cmd = [
            exe,
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "ucp_am_lat",
            "-n",
            str(iters),
            "-w",
            str(max(100, iters // 10)),
            "-f",
        ]
        try:
            cp = subprocess.run(
                cmd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=pinned([client_cpu]),
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        nums = None
        for line in cp.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 8 and all(_is_number(f) for f in fields[:8]):
                nums = [float(f) for f in fields[:8]]
        if cp.returncode != 0 or nums is None:
            return {"error": f"exit {cp.returncode}: {(cp.stderr or cp.stdout).strip()[-300:]}"}
        return {
            "iters": int(nums[0]),
            "one_way_p50_us": nums[1],
            "one_way_avg_us": nums[2],
            "rtt_p50_us": 2 * nums[1],
            "rtt_avg_us": 2 * nums[2],
            "tls": tls,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
        }
    finally:
        stop(srv, timeout_s=5)


def _is_number(s):
    try:
        float(s)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------
# Table


def fmt_busy(busy):
    return ", ".join(f"CPU{c} {v:.0%}" for c, v in sorted(busy.items())) or "n/a"


def fmt_num(v, kind):
    if v is None or v != v:
        return "n/a"
    if kind == "us":
        return f"{v:.1f}"
    if kind == "GB/s":
        return f"{v:.2f}"
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.2f}{suf}"
    return f"{v:.0f}"


def dig(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


YOKAN_COLUMNS = [("na+sm x-proc", "sm"), ("tcp x-proc", "tcp"), ("in-process", "inproc")]


def build_rows(res, has_list):
    """(section, label, unit, higher_is_better, redis_value, {col: yokan_value})."""
    rows = []
    ops = ("put", "get", "exists", "erase")
    sections = [
        ("1. single ops, server CPU0 / client CPU1", "cross", None),
        ("1b. single ops, all on CPU1", "same", None),
        ("1c. single ops, all on CPU1, client call_spin_us=0", "same_nospin", "same"),
    ]
    for title, place, redis_place in sections:
        redis_key = f"redis_{redis_place or place}"
        for op in ops:
            for metric, unit, hib in (
                ("p50_us", "us", False),
                ("p99_us", "us", False),
                ("ops_s", "ops/s", True),
            ):
                label = f"{op} {metric.replace('_us', '').replace('_s', '/s')}"
                rows.append(
                    (
                        title,
                        label,
                        unit,
                        hib,
                        dig(res, redis_key, "single", op, metric),
                        {
                            c: dig(res, f"{c}_{place}", "single", op, metric)
                            for _, c in YOKAN_COLUMNS
                        },
                    )
                )
    title = "2. batches of 1000 (16 B keys, 64 B values), CPU0 / CPU1"
    for label, op, metric in (
        ("put_multi new keys vs MSET", "put_multi/get_multi", "put_keys_s"),
        ("put_multi overwrite vs MSET", "put_multi/get_multi", "overwrite_keys_s"),
        ("get_multi vs MGET", "put_multi/get_multi", "get_keys_s"),
        ("put_packed new keys vs MSET", "put_packed/get_packed", "put_keys_s"),
        ("put_packed overwrite vs MSET", "put_packed/get_packed", "overwrite_keys_s"),
        ("get_packed vs MGET", "put_packed/get_packed", "get_keys_s"),
    ):
        rmetric = metric
        rows.append(
            (
                title,
                label,
                "keys/s",
                True,
                dig(res, "redis_cross", "batch", "MSET/MGET", rmetric),
                {c: dig(res, f"{c}_cross", "batch", op, metric) for _, c in YOKAN_COLUMNS},
            )
        )
    title = "3. numpy arrays (Yokan get into preallocated; Redis bytes), CPU0 / CPU1"
    for size in ("1MiB", "64MiB"):
        for op in ("put", "get"):
            rows.append(
                (
                    title,
                    f"{op} {size}",
                    "GB/s",
                    True,
                    dig(res, "redis_cross", "large", size, f"{op}_GB_s"),
                    {
                        c: dig(res, f"{c}_cross", "large", size, f"{op}_GB_s")
                        for _, c in YOKAN_COLUMNS
                    },
                )
            )
    title = "4. listing 100k keys under a prefix (Redis SCAN MATCH)"
    if has_list:
        for label, metric in (
            ("list_keys, a buffer per key", "keys_s"),
            ("list_keys_packed", "packed_keys_s"),
            ("scan iterator", "scan_keys_s"),
        ):
            rows.append(
                (
                    title,
                    label,
                    "keys/s",
                    True,
                    dig(res, "redis_cross", "list", "keys_s"),
                    {c: dig(res, f"{c}_cross", "list", metric) for _, c in YOKAN_COLUMNS},
                )
            )
    else:
        rows.append((title, "skipped: Database has no list_keys", "", True, None, {}))
    title = "5. 2 client processes, single gets, aggregate"
    for label, key in (
        ("server CPU0, clients CPU1", "multi_pinned"),
        ("all unpinned (CPUs 0-1)", "multi_free"),
    ):
        rows.append(
            (
                title,
                label,
                "ops/s",
                True,
                dig(res, f"redis_{key}", "aggregate_ops_s"),
                {c: dig(res, f"{c}_{key}", "aggregate_ops_s") for _, c in YOKAN_COLUMNS},
            )
        )
    return rows


def ratio(redis_v, yokan_v, higher_is_better):
    if not redis_v or not yokan_v or redis_v != redis_v or yokan_v != yokan_v:
        return None
    return yokan_v / redis_v if higher_is_better else redis_v / yokan_v


def render_table(rows):
    head = ["workload", "unit", "Redis"]
    for name, _ in YOKAN_COLUMNS:
        head += [f"Yokan {name}", "ratio"]
    lines = []
    body = []
    for section, label, unit, hib, rv, yv in rows:
        cells = [label, unit, fmt_num(rv, unit)]
        for _, c in YOKAN_COLUMNS:
            y = yv.get(c)
            r = ratio(rv, y, hib)
            cells += [fmt_num(y, unit) if c in yv else "", f"{r:.2f}x" if r else ""]
        body.append((section, cells))
    widths = [len(h) for h in head]
    for _, cells in body:
        widths = [max(w, len(x)) for w, x in zip(widths, cells)]

    def line(cells):
        return "  ".join(
            x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(cells, widths))
        )

    lines.append(line(head))
    lines.append("-" * len(lines[0]))
    current = None
    for section, cells in body:
        if section != current:
            lines.append(f"[{section}]")
            current = section
        lines.append(line(cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Main


def environment():
    def cmd(*args):
        try:
            return subprocess.run(
                args, capture_output=True, text=True, timeout=10, cwd=HERE
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("redis", "hiredis", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = None
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host_cpu": cpu_model,
        "cpus": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": cmd("redis-server", "--version"),
        "ucx": cmd("ucx_info", "-v").splitlines()[0:1],
        "git": cmd("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(cmd("git", "status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs/counts (~1 minute)")
    ap.add_argument(
        "--json",
        default=os.path.join(HERE, "results", "latest.json"),
        help="where to write the JSON results (default: bench/results/latest.json)",
    )
    ap.add_argument("--no-tcp", action="store_true", help="skip the Yokan tcp configuration")
    ap.add_argument(
        "--shards-only",
        action="store_true",
        help="run only section 6 (batches over 4 shards vs one provider)",
    )
    args = ap.parse_args(argv)
    params = dict(QUICK if args.quick else NORMAL)
    t_start = time.monotonic()

    cpus = sorted(os.sched_getaffinity(0))
    srv_cpu, cli_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (cpus[0], cpus[0])
    both = cpus[:2]
    placement = {
        "cross": {"server": [srv_cpu], "client": [cli_cpu], "in_process": both},
        "same": {"server": [cli_cpu], "client": [cli_cpu], "in_process": [cli_cpu]},
        "multi_pinned": {"server": [srv_cpu], "clients": [[cli_cpu], [cli_cpu]]},
        "multi_free": {"server": both, "clients": [both, both]},
        "method": "os.sched_setaffinity in each child before exec (covers all its threads)",
    }
    if len(cpus) < 2:
        print("warning: only one CPU available; cross-CPU rows run on one CPU", flush=True)

    if args.shards_only:

        def say(msg):
            print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

        shards = run_shards(params, srv_cpu, cli_cpu, say)
        print()
        print(f"Server(s) CPU{srv_cpu}, client CPU{cli_cpu}; medians of {params['runs']} runs")
        print(render_shards(shards))
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": environment(), "params": params, "shards": shards}, f, indent=1)
        return 1 if any("error" in v for v in shards.values()) else 0

    from mochi.yokan.client import Database

    has_list = hasattr(Database, "list_keys")
    full = ["single", "batch", "large"] + (["list"] if has_list else [])
    same_params = dict(
        params, runs=params["same_cpu_runs"], loop_budget_s=params["same_cpu_loop_budget_s"]
    )
    nospin = {"call_spin_us": 0}
    wt = params["worker_timeout_s"]
    res = {}

    def log(msg):
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    def work(name, target, workloads, cpus_, p=params):
        log(f"{name}: {', '.join(workloads)} on CPUs {cpus_}")
        res[name] = run_worker(
            {"mode": "run", "target": target, "workloads": workloads, "params": p}, cpus_, wt
        )
        if "error" in res[name]:
            log(f"{name}: ERROR {res[name]['error']}")

    def windows(name, target, clients):
        log(f"{name}: 2 clients on {clients}")
        res[name] = run_windows(target, clients, params)
        if "error" in res[name]:
            log(f"{name}: ERROR {res[name]['error']}")

    background = {"before": {"cpu_busy": cpu_busy(cpus), "loadavg": loadavg()}}
    log("background CPU busy before the run: " + fmt_busy(background["before"]["cpu_busy"]))

    def pace():
        # A bare Python loop on each CPU: the VM's pace at this moment.
        return {
            f"cpu{c}": run_worker(
                {"mode": "run", "target": None, "workloads": ["pace"], "params": params}, [c], wt
            ).get("pace")
            for c in both
        }

    log("Python pace")
    limits = {"pace_before": pace()}
    # Physical limits.
    log("memcpy")
    limits["memcpy"] = run_worker(
        {"mode": "run", "target": None, "workloads": ["memcpy"], "params": params},
        [cli_cpu],
        wt,
    ).get("memcpy")
    log("shared-memory hand-off")
    import handoff  # numpy, which only the benchmark's own processes need

    limits["handoff"] = {
        str(mib): handoff.handoff_bandwidth(mib, reps, params["runs"], srv_cpu, cli_cpu)
        for mib, reps in zip(params["large_mib"], params["large_reps"])
    }
    log("ucx_perftest")
    limits["ucx_sm_cross"] = ucx_round_trip("sm,self", srv_cpu, cli_cpu, params)
    limits["ucx_tcp_cross"] = ucx_round_trip(
        "tcp", srv_cpu, cli_cpu, dict(params, ucx_iters=params["ucx_tcp_iters"])
    )
    limits["ucx_sm_same"] = ucx_round_trip(
        "sm,self",
        cli_cpu,
        cli_cpu,
        dict(params, ucx_iters=2000, ucx_timeout_s=min(8, params["ucx_timeout_s"])),
    )
    if "error" in limits["ucx_sm_same"]:
        limits["ucx_sm_same"]["why"] = (
            "both ucx_perftest sides busy-poll; on one CPU each "
            "waits for the scheduler to run the other"
        )

    # Redis.
    for place, srv_cpus, workloads, p in (
        ("cross", [srv_cpu], full, params),
        ("same", [cli_cpu], ["single"], same_params),
    ):
        redis = RedisServer(srv_cpus)
        try:
            work(
                f"redis_{place}",
                redis.spec(),
                workloads,
                [cli_cpu] if place == "cross" else [cli_cpu],
                p,
            )
            if place == "cross":
                windows("redis_multi_pinned", redis.spec(), [[cli_cpu], [cli_cpu]])
        finally:
            redis.close()
    redis = RedisServer(both)
    try:
        windows("redis_multi_free", redis.spec(), [both, both])
    finally:
        redis.close()

    # Yokan in separate processes.
    protocols = [("sm", "na+sm")] + ([] if args.no_tcp else [("tcp", "tcp")])
    for col, proto in protocols:
        server = YokanServer(proto, [srv_cpu])
        try:
            work(f"{col}_cross", server.spec(), full, [cli_cpu])
            windows(f"{col}_multi_pinned", server.spec(), [[cli_cpu], [cli_cpu]])
        finally:
            server.close()
        server = YokanServer(proto, [cli_cpu])
        try:
            work(f"{col}_same", server.spec(), ["single"], [cli_cpu], same_params)
            work(f"{col}_same_nospin", server.spec(nospin), ["single"], [cli_cpu], same_params)
        finally:
            server.close()
        server = YokanServer(proto, both)
        try:
            windows(f"{col}_multi_free", server.spec(), [both, both])
        finally:
            server.close()

    res["shards"] = run_shards(params, srv_cpu, cli_cpu, log)

    # Yokan in-process (provider and client share one na+sm engine).
    inproc = {"kind": "yokan", "protocol": "na+sm"}
    work("inproc_cross", inproc, full, both)
    work("inproc_same", inproc, ["single"], [cli_cpu], same_params)
    work(
        "inproc_same_nospin", dict(inproc, engine_config=nospin), ["single"], [cli_cpu], same_params
    )

    log("Python pace")
    limits["pace_after"] = pace()
    background["after"] = {"cpu_busy": cpu_busy(cpus), "loadavg": loadavg()}
    elapsed = time.monotonic() - t_start
    rows = build_rows(res, has_list)
    env = environment()

    print()
    print(
        f"Yokan vs Redis  ({'quick' if args.quick else 'normal'} run, {env['date']}, "
        f"git {env['git']}{'+dirty' if env['git_dirty'] else ''}, {elapsed:.0f} s)"
    )
    print(
        f"CPU: {env['host_cpu']}; {env['redis_server'].split(' sha=')[0]}; "
        f"redis-py {env['versions']['redis']} + hiredis {env['versions']['hiredis']}"
    )
    print(
        f"Placement: server CPU{srv_cpu} / client CPU{cli_cpu} (x-proc, Redis); in-process "
        f"on CPUs {both}; 'all on CPU{cli_cpu}' rows pin server and client there "
        f"(in-process: the whole process)."
    )
    bb, ba = background["before"], background["after"]
    print(
        f"Background load (other processes, 1 s idle sample): before "
        f"{fmt_busy(bb['cpu_busy'])}, after {fmt_busy(ba['cpu_busy'])}; loadavg "
        f"{bb['loadavg']} -> {ba['loadavg']}"
    )
    if any(v > 0.2 for v in list(bb["cpu_busy"].values()) + list(ba["cpu_busy"].values())):
        print(
            "WARNING: other processes keep the CPUs busy; absolute numbers (Redis, which "
            "sleeps in epoll, most of all) are inflated by scheduling delays."
        )
    print(
        f"Medians of {params['runs']} runs ({params['same_cpu_runs']} for same-CPU rows); "
        "ratio = Yokan/Redis for throughput, Redis/Yokan for latency (>1 = Yokan better)."
    )
    print()
    print(render_table(rows))
    print()
    print(render_shards(res["shards"]))
    print()
    print("Physical limits (same run):")

    def fmt_pace(p):
        return ", ".join(
            f"{c.upper()} {v['ns_per_turn']:.1f}" if v else f"{c.upper()} n/a" for c, v in p.items()
        )

    print(
        f"  VM pace, a bare Python loop (ns per turn, best of 5; it moves by up to 2x on a shared "
        f"VM, and so do the Python-driven rows): before {fmt_pace(limits['pace_before'])}; "
        f"after {fmt_pace(limits['pace_after'])}"
    )
    m = limits["memcpy"] or {}
    print(
        f"  memcpy (numpy copyto, {params['memcpy_mib']} MiB, preallocated, CPU{cli_cpu}): "
        f"{fmt_num(m.get('GB_s'), 'GB/s')} GB/s"
    )
    for mib, h in limits["handoff"].items():
        if "error" in h:
            print(f"  hand-off {mib} MiB CPU{srv_cpu}->CPU{cli_cpu}: n/a: {h['error']}")
            continue
        runs = ", ".join(f"{x:.1f}" for x in h["runs"])
        print(
            f"  hand-off CPU{srv_cpu}->CPU{cli_cpu} through shared memory, {mib} MiB, 2 copies "
            f"(the shape of a large get over sm): {h['GB_s']:.2f} GB/s (runs: {runs})"
        )
    for key, label in (
        ("ucx_sm_cross", f"UCX sm  CPU{srv_cpu}<->CPU{cli_cpu}"),
        ("ucx_tcp_cross", f"UCX tcp CPU{srv_cpu}<->CPU{cli_cpu}"),
        ("ucx_sm_same", f"UCX sm  CPU{cli_cpu}<->CPU{cli_cpu}"),
    ):
        u = limits[key]
        if "error" in u:
            why = f" ({u['why']})" if "why" in u else ""
            print(f"  {label} ucp_am_lat round trip: n/a: {u['error']}{why}")
        else:
            print(
                f"  {label} ucp_am_lat round trip: p50 {u['rtt_p50_us']:.2f} us, "
                f"avg {u['rtt_avg_us']:.2f} us ({u['iters']} iters; 2x one-way)"
            )
    truncated = [
        k
        for k, v in res.items()
        if isinstance(v, dict)
        and any(isinstance(w, dict) and w.get("truncated") for w in v.values())
    ]
    errors = {k: v["error"] for k, v in res.items() if isinstance(v, dict) and "error" in v}
    if truncated:
        print(
            f"Note: loops cut by their time bound in: {', '.join(truncated)} "
            "(fewer samples than the fixed count)"
        )
    for k, e in errors.items():
        print(f"ERROR in {k}: {e}")

    out = {
        "meta": env,
        "background": background,
        "quick": args.quick,
        "params": params,
        "placement": placement,
        "elapsed_s": elapsed,
        "limits": limits,
        "results": res,
        "table": [
            {
                "section": s,
                "row": lbl,
                "unit": u,
                "redis": rv,
                "yokan": yv,
                "ratio": {c: ratio(rv, yv.get(c), hib) for _, c in YOKAN_COLUMNS},
            }
            for s, lbl, u, hib, rv, yv in rows
        ],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"JSON written to {os.path.relpath(args.json)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
