"""``yokan-server``: run Yokan providers as a service.

    yokan-server ADDRESS -c CONFIG.json [--address-file F] [--pid-file F]
                 [--log-level LEVEL] [--log-file F]
    yokan-server snapshot ADDRESS PROVIDER_ID DEST   (see mochi.yokan.admin)

(also ``python -m mochi.yokan.server ...``). The configuration has
Bedrock's shape, so that a file written for ``bedrock ADDRESS -c`` serves
here unchanged::

    {"providers": [{"name": "metadata", "type": "yokan", "provider_id": 1,
                    "config": {"database": {"type": "rocksdb",
                                            "config": {"path": "/scratch/md"}}}}],
     "engine": {"num_rpc_threads": 4}}

``engine`` (optional) is this engine's own configuration (see
``mochi.margo.Engine``). Bedrock keys this engine has no use for
(``libraries``, ``margo``, ``abt_io``, ...) are accepted and named once in a
warning. Anything malformed is reported with the key it concerns and exit
code 2, before any engine, port or database is opened.

Each client connection is logged (``client IP:PORT connected`` /
``disconnected``, info level). Once every provider serves, it prints
``yokan-server running at ADDRESS`` and writes the address file
(atomically: a reader never sees half of it).
SIGTERM or SIGINT stop it: requests in progress are answered, every
backend is flushed and closed, and it exits 0. Each database path is
locked (``PATH.yokan-server.lock``), so a second server on the same
database fails at once with a message naming the path and the holder.

A provider's ``config`` may add ``"read_only": true``: it then serves every
read and answers every write with ``YOKAN_ERR_PERMISSION``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "ConfigError", "parse_config", "ServerConfig"]

EXIT_CONFIG = 2
# After the providers stop: time for the answers they sent to leave.
STOP_GRACE_S = 0.2
EXIT_FAILURE = 1

log = logging.getLogger("yokan-server")

# Bedrock's top-level sections that have no meaning for this engine: taken
# without complaint beyond one warning, so Bedrock configs work as they are.
BEDROCK_IGNORED = ("libraries", "margo", "abt_io", "ssg", "mona", "clients", "bedrock", "flock")
# Per-provider keys of Bedrock that this server does not use.
PROVIDER_IGNORED = ("pool", "dependencies", "tags")


class ConfigError(ValueError):
    """A malformed configuration; ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class ProviderSpec:
    """One entry of ``providers``, checked."""

    def __init__(self, name: str, provider_id: int, config: Dict[str, Any]) -> None:
        self.name = name
        self.provider_id = provider_id
        self.config = config

    @property
    def backend(self) -> str:
        """The backend type, or "" for a provider without a database (the
        destination of a restore or migration, docs/snapshot.rst)."""
        if "database" not in self.config:
            return ""
        return str(self.config["database"]["type"])

    @property
    def read_only(self) -> bool:
        """``"read_only": true``: the provider serves reads and refuses writes."""
        return bool(self.config.get("read_only", False))

    @property
    def path(self) -> Optional[str]:
        """The database's file or directory, for backends that have one."""
        path = self.config.get("database", {}).get("config", {}).get("path")
        return path if isinstance(path, str) and path else None


class ServerConfig:
    """A checked configuration: the engine's settings, the providers, and the
    Bedrock keys that were accepted but are not used."""

    def __init__(
        self, engine: Dict[str, Any], providers: List[ProviderSpec], ignored: List[str]
    ) -> None:
        self.engine = engine
        self.providers = providers
        self.ignored = ignored


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def _parse_provider(
    index: int, entry: Any, backends: Sequence[str]
) -> Tuple[ProviderSpec, List[str]]:
    where = f"providers[{index}]"
    _require(isinstance(entry, dict), where, "must be an object")
    ignored = [f"{where}.{k}" for k in PROVIDER_IGNORED if k in entry]
    known = {"name", "type", "provider_id", "config", *PROVIDER_IGNORED}
    unknown = sorted(set(entry) - known)
    _require(not unknown, f"{where}.{unknown[0] if unknown else ''}", "unknown key")
    name = entry.get("name")
    _require(isinstance(name, str) and bool(name), f"{where}.name", "must be a non-empty string")
    kind = entry.get("type", "yokan")
    _require(
        kind == "yokan", f"{where}.type", f"is {kind!r}: this server hosts only 'yokan' providers"
    )
    pid = entry.get("provider_id")
    _require(
        isinstance(pid, int) and not isinstance(pid, bool) and 0 <= pid <= 0xFFFF,
        f"{where}.provider_id",
        "must be an integer in [0, 65535]",
    )
    config = entry.get("config")
    _require(isinstance(config, dict), f"{where}.config", "must be an object")
    # No "database": a provider without one, until one is restored or
    # migrated in (docs/snapshot.rst).
    if "database" in config:
        database = config["database"]
        _require(isinstance(database, dict), f"{where}.config.database", "must be an object")
        backend = database.get("type")
        _require(
            isinstance(backend, str) and backend in backends,
            f"{where}.config.database.type",
            f"must name a backend of this build ({', '.join(backends)}), not {backend!r}",
        )
        sub = database.get("config", {})
        _require(isinstance(sub, dict), f"{where}.config.database.config", "must be an object")
    read_only = config.get("read_only", False)
    _require(
        isinstance(read_only, bool),
        f"{where}.config.read_only",
        f"must be true or false, not {read_only!r}",
    )
    return ProviderSpec(name, pid, config), ignored


def parse_config(text: str, backends: Sequence[str]) -> ServerConfig:
    """Checks a configuration without opening anything.

    Returns a :class:`ServerConfig`; raises :class:`ConfigError` naming the
    offending key.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("", f"not valid JSON: {e}") from None
    _require(isinstance(doc, dict), "", "the configuration must be a JSON object")
    known = {"providers", "engine", *BEDROCK_IGNORED}
    unknown = sorted(set(doc) - known)
    _require(not unknown, unknown[0] if unknown else "", "unknown key")
    engine = doc.get("engine", {})
    _require(isinstance(engine, dict), "engine", "must be an object")
    entries = doc.get("providers")
    _require(isinstance(entries, list) and bool(entries), "providers", "must be a non-empty list")
    ignored = [k for k in BEDROCK_IGNORED if k in doc]
    providers: List[ProviderSpec] = []
    for i, entry in enumerate(entries):
        spec, skipped = _parse_provider(i, entry, backends)
        ignored += skipped
        providers.append(spec)
    for attr, what in (("name", "name"), ("provider_id", "provider_id")):
        seen: Dict[Any, int] = {}
        for i, spec in enumerate(providers):
            value = getattr(spec, attr)
            _require(
                value not in seen,
                f"providers[{i}].{what}",
                f"{value!r} is already used by providers[{seen.get(value)}]",
            )
            seen[value] = i
    paths: Dict[str, int] = {}
    for i, spec in enumerate(providers):
        if spec.path is None:
            continue
        real = os.path.realpath(spec.path)
        _require(
            real not in paths,
            f"providers[{i}].config.database.config.path",
            f"{spec.path!r} is also the database of providers[{paths.get(real)}]",
        )
        paths[real] = i
    return ServerConfig(engine, providers, ignored)


class PathLock:
    """An exclusive, non-blocking lock on ``PATH.yokan-server.lock``: one
    server per database. The kernel drops it when the process dies, so a
    killed server never leaves a stale lock behind."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = os.path.abspath(path.rstrip("/")) + ".yokan-server.lock"
        self.fd = -1

    def acquire(self) -> None:
        parent = os.path.dirname(self.lock_path)
        os.makedirs(parent, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RuntimeError(
                f"database {self.path!r} is in use by another yokan-server (pid {holder}); "
                f"lock file {self.lock_path}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_atomically(path: str, text: str) -> None:
    """Readers see the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _setup_logging(level: str, log_file: Optional[str]) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s yokan-server[%(process)d] %(levelname)s %(message)s")
    )
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def _arguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="yokan-server",
        description="Serve Yokan providers described by a Bedrock-style JSON configuration.",
    )
    parser.add_argument("address", help="listen address: tcp, tcp://HOST:PORT, na+sm, ...")
    parser.add_argument("-c", "--config", required=True, help="JSON configuration file")
    parser.add_argument("--address-file", help="write the address here once serving")
    parser.add_argument("--pid-file", help="write the process id here")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="default: info",
    )
    parser.add_argument("--log-file", help="log here instead of standard error")
    parser.add_argument(
        "--group-file",
        help="register this server in a group file once it serves (under MPI with mpi4py: "
        "rank 0 writes the whole group once every rank serves)",
    )
    parser.add_argument(
        "--group-rank",
        type=int,
        help="this server's place in the group (its shard index; keep it across restarts "
        "so that persistent data stays routable); default: the launcher's rank "
        "(SLURM_PROCID, PMI_RANK, OMPI_COMM_WORLD_RANK) if any, else the order of registration",
    )
    parser.add_argument(
        "--join",
        action="store_true",
        help="grow the group in --group-file by this server: once it serves, move to it the "
        "keys that now route to it while clients keep working (see mochi.yokan.rebalance)",
    )
    parser.add_argument(
        "--group-size",
        type=int,
        help="how many servers the group will have (written to the group file; "
        "clients wait for that many); default under MPI: the number of ranks",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the server; returns the process exit code (0 after a clean stop,
    2 for a bad configuration, 1 when the engine or a provider fails to start).
    Raises nothing: every failure is reported on standard error and the log."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["snapshot"]:  # an admin call, not a server (mochi.yokan.admin)
        from mochi.yokan.admin import snapshot_main

        return snapshot_main(argv[1:])
    args = _arguments(argv)
    _setup_logging(args.log_level, args.log_file)

    from mochi.yokan.backends import available_backends

    try:
        with open(args.config) as f:
            text = f.read()
    except OSError as e:
        print(f"yokan-server: cannot read the configuration: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = parse_config(text, available_backends)
    except ConfigError as e:
        print(f"yokan-server: invalid configuration {args.config}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    for flag, value in (("--group-size", args.group_size), ("--group-rank", args.group_rank)):
        if value is not None and (value < 0 or (flag == "--group-size" and value < 1)):
            print(f"yokan-server: {flag} {value} is out of range", file=sys.stderr)
            return EXIT_CONFIG
    if (args.group_size is not None or args.group_rank is not None) and not args.group_file:
        print("yokan-server: --group-size/--group-rank need --group-file", file=sys.stderr)
        return EXIT_CONFIG
    if args.join and (
        not args.group_file or args.group_size is not None or args.group_rank is not None
    ):
        print(
            "yokan-server: --join needs --group-file, and takes no --group-size/--group-rank "
            "(the member joins last)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if config.ignored:
        log.warning(
            "ignoring Bedrock settings this engine has no use for: %s", ", ".join(config.ignored)
        )

    with contextlib.ExitStack() as stack:
        for spec in config.providers:
            if not spec.path:
                continue
            lock = PathLock(spec.path)
            try:
                lock.acquire()
            except (RuntimeError, OSError) as e:
                print(f"yokan-server: cannot start provider {spec.name!r}: {e}", file=sys.stderr)
                return EXIT_FAILURE
            stack.callback(lock.release)
        if args.pid_file:
            _write_atomically(args.pid_file, f"{os.getpid()}\n")
            stack.callback(_remove_quietly, args.pid_file)
        return _serve(args, config, stack)
    return EXIT_FAILURE  # unreachable; keeps type checkers content


def _mpi_world() -> Any:
    """MPI's world communicator when this process was started by an MPI
    launcher with more than one rank and mpi4py is installed, else None."""
    launched = any(
        v in os.environ
        for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    )
    if not launched:
        return None
    try:
        from mpi4py import MPI  # type: ignore[import-not-found,unused-ignore]  # optional
    except ImportError:
        log.warning(
            "started by an MPI launcher but mpi4py is not installed: "
            "registering through the group file's lock instead"
        )
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def _grow_in_background(
    args: argparse.Namespace, address: str, provider_ids: List[int], engine: Any
) -> None:
    """--join: the group grows by this server in a thread, while it serves
    (the keys moved to it arrive as requests like any client's)."""
    import threading

    from mochi.yokan import rebalance

    def run() -> None:
        try:
            rebalance.grow(
                args.group_file, address, provider_ids, engine=engine, pid=os.getpid(), log=log.info
            )
        except Exception as e:  # noqa: BLE001 - logged; the group stays moving, clients work
            log.error(
                "could not finish joining the group in %s: %s; to finish: yokan-group grow %s %s",
                args.group_file,
                e,
                args.group_file,
                address,
            )

    threading.Thread(target=run, name="yokan-join", daemon=True).start()


def _join_group(
    args: argparse.Namespace,
    address: str,
    provider_ids: List[int],
    stack: contextlib.ExitStack,
    engine: Any = None,
) -> None:
    """Puts this server in the group file: under MPI, rank 0 gathers every
    rank's entry and writes the file once all serve; otherwise each server
    adds itself under the file's lock (and removes itself at a clean stop)."""
    from mochi.yokan import group

    if args.join:
        _grow_in_background(args, address, provider_ids, engine)
        stack.callback(group.unregister_member, args.group_file, address)
        return
    world = _mpi_world()
    if world is not None:
        entries = world.gather(
            {
                "address": address,
                "provider_ids": provider_ids,
                "pid": os.getpid(),
                "rank": world.Get_rank(),
            }
        )
        if world.Get_rank() == 0:
            group.write_group_file(
                args.group_file, {"members": entries, "size": args.group_size or world.Get_size()}
            )
            log.info("wrote the group of %d servers to %s", world.Get_size(), args.group_file)
        world.Barrier()  # every rank returns once the file is complete
        return
    rank = args.group_rank
    if rank is None:
        for variable in ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
            if os.environ.get(variable, "").isdigit():
                rank = int(os.environ[variable])
                break
    count = group.register_member(args.group_file, address, provider_ids, args.group_size, rank)
    log.info("joined the group in %s (%d member(s) so far)", args.group_file, count)
    stack.callback(group.unregister_member, args.group_file, address)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _abort(message: str, providers: List[Any], engine: Any) -> int:
    """Reports a failed start (log and standard error), stops what started,
    and returns the failing exit code."""
    log.error("%s", message)
    print(f"yokan-server: {message}", file=sys.stderr)
    del providers[:]
    engine.finalize()
    return EXIT_FAILURE


def _log_peers(native: Any) -> None:
    """Logs the client connections opened and closed since the last call."""
    for connected, peer in native.take_peer_events():
        log.info("client %s %s", peer, "connected" if connected else "disconnected")


def _serve(args: argparse.Namespace, config: ServerConfig, stack: contextlib.ExitStack) -> int:
    from mochi.margo import Engine
    from mochi.yokan.server import Provider

    stop_signal: List[int] = []
    try:
        engine = Engine(args.address, config=config.engine)
    except Exception as e:  # noqa: BLE001 - reported, then a failing exit code
        log.error("cannot start the engine on %s: %s", args.address, e)
        print(f"yokan-server: cannot start the engine on {args.address}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    # Client connections are logged at info level (from the engine's
    # bootstrap socket: nothing is added to the path of a request).
    engine.mid.record_peer_events(True)
    providers = []
    try:
        for spec in config.providers:
            providers.append(Provider(engine, spec.provider_id, json.dumps(spec.config)))
            log.info(
                "provider %r (id %d) serving %s%s%s",
                spec.name,
                spec.provider_id,
                f"a {spec.backend} database" if spec.backend else "no database yet",
                f" at {spec.path}" if spec.path else "",
                " (read-only)" if spec.read_only else "",
            )
    except Exception as e:  # noqa: BLE001 - reported, then a failing exit code
        return _abort(f"cannot start provider {spec.name!r}: {e}", providers, engine)

    def request_stop(signum: int, _frame: Any) -> None:
        stop_signal.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    address = str(engine.addr())
    if args.address_file:
        _write_atomically(args.address_file, address + "\n")
        stack.callback(_remove_quietly, args.address_file)
    if args.group_file:
        try:
            _join_group(args, address, [p.provider_id for p in config.providers], stack, engine)
        except Exception as e:  # noqa: BLE001 - reported, then a failing exit code
            return _abort(f"cannot join the group in {args.group_file}: {e}", providers, engine)
    log.info("running at %s with %d provider(s)", address, len(providers))
    print(f"yokan-server running at {address}", flush=True)
    native = engine.mid
    while not stop_signal and not native.wait_for_finalize(200.0):
        _log_peers(native)  # every 200 ms, so that the signal handler gets to run too
    _log_peers(native)
    why = signal.Signals(stop_signal[0]).name if stop_signal else "engine finalized"
    log.info("stopping (%s): closing %d provider(s)", why, len(providers))
    # Providers first, engine last: a provider's shutdown waits for the writes
    # in progress, answers its parked WAIT requests and flushes its backend;
    # the grace lets those answers leave before the engine closes the
    # clients' connections.
    del providers[:]
    time.sleep(STOP_GRACE_S)  # replies still in the transport's queue leave
    engine.finalize()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
