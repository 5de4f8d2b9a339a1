"""yokan-server: Bedrock-shaped configs, readiness, clean stops, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import PERSISTENT, backend_config
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientException
from mochi.yokan.exception import YOKAN_ERR_INVALID_DATABASE
from mochi.yokan.server import Provider

DAEMON = [sys.executable, "-m", "mochi.yokan.server"]
PERSISTENT_BUILT = sorted(b for b in PERSISTENT if b in available_backends and b != "log")


def write_config(tmp_path, doc, name="server.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def provider_entry(name, provider_id, database):
    return {"name": name, "type": "yokan", "provider_id": provider_id, "config": database}


class Daemon:
    """A yokan-server process, stopped (SIGTERM) when the test ends."""

    def __init__(self, tmp_path, config, *extra, command=None):
        self.address_file = tmp_path / "address"
        self.pid_file = tmp_path / "pid"
        self.proc = subprocess.Popen(
            [
                *(command or DAEMON),
                "tcp",
                "-c",
                str(config),
                "--address-file",
                str(self.address_file),
                "--pid-file",
                str(self.pid_file),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout=60):
        line = self.proc.stdout.readline()
        assert line.startswith("yokan-server running at "), (line, self.stop())
        address = line.split(" at ", 1)[1].strip()
        assert self.address_file.read_text().strip() == address
        return address

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def run_daemon(tmp_path, config, timeout=60):
    return subprocess.run(
        [*DAEMON, "tcp", "-c", str(config)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("backend", PERSISTENT_BUILT)
def test_two_providers_serve_and_a_sigterm_stops_cleanly(tmp_path, backend):
    stored = backend_config(backend, tmp_path)
    config = write_config(
        tmp_path,
        {
            "libraries": {"yokan": "libyokan-bedrock-module.so"},
            "margo": {"argobots": {"pools": []}},
            "providers": [
                provider_entry("scratch", 1, {"database": {"type": "map"}}),
                provider_entry("kept", 2, stored),
            ],
        },
    )
    daemon = Daemon(tmp_path, config)
    address = daemon.wait_ready()
    assert int(daemon.pid_file.read_text()) == daemon.proc.pid
    with Engine("tcp", mode=0) as engine:
        client = Client(engine)
        scratch = client.make_database_handle(address, 1)
        kept = client.make_database_handle(address, 2)
        scratch.put("a", "1")
        kept.put("b", "2")
        assert scratch.get("a") == b"1" and kept.get("b") == b"2"
        assert not kept.exists("a")
        del scratch, kept
    code, _, err = daemon.stop()
    assert code == 0, err
    assert "ignoring Bedrock settings" in err and "libraries" in err and "margo" in err
    assert err.count("ignoring Bedrock settings") == 1
    assert "stopped" in err
    assert not daemon.address_file.exists() and not daemon.pid_file.exists()

    # The data was flushed and closed: a new server finds it.
    again = Daemon(tmp_path, config)
    address = again.wait_ready()
    with Engine("tcp", mode=0) as engine:
        assert Client(engine).make_database_handle(address, 2).get("b") == b"2"
    assert again.stop()[0] == 0


@pytest.mark.parametrize("backend", PERSISTENT_BUILT)
def test_a_second_server_on_the_same_database_is_refused(tmp_path, backend):
    database = backend_config(backend, tmp_path)
    config = write_config(tmp_path, {"providers": [provider_entry("db", 1, database)]})
    first = Daemon(tmp_path, config)
    first.wait_ready()
    second = run_daemon(tmp_path, config)
    assert second.returncode == 1
    assert "in use by another yokan-server" in second.stderr
    assert str(first.proc.pid) in second.stderr
    assert first.proc.poll() is None  # the first one serves on
    assert first.stop()[0] == 0


def test_a_killed_server_leaves_no_stale_lock(tmp_path):
    database = backend_config("rocksdb" if "rocksdb" in available_backends else "log", tmp_path)
    config = write_config(tmp_path, {"providers": [provider_entry("db", 1, database)]})
    first = Daemon(tmp_path, config)
    first.wait_ready()
    first.proc.kill()
    first.proc.wait(timeout=30)
    second = Daemon(tmp_path, config)
    second.wait_ready()
    assert second.stop()[0] == 0


def test_sigint_stops_cleanly_too(tmp_path):
    config = write_config(
        tmp_path, {"providers": [provider_entry("m", 3, {"database": {"type": "map"}})]}
    )
    daemon = Daemon(tmp_path, config)
    daemon.wait_ready()
    code, _, err = daemon.stop(signal.SIGINT)
    assert code == 0, err
    assert "SIGINT" in err


MALFORMED = [
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ({"providers": []}, "providers: must be a non-empty list"),
    ({"provider": []}, "provider: unknown key"),
    ({"providers": [7]}, "providers[0]: must be an object"),
    ({"providers": [{"type": "yokan", "provider_id": 1}]}, "providers[0].name"),
    (
        {"providers": [{"name": "x", "type": "warabi", "provider_id": 1, "config": {}}]},
        "providers[0].type",
    ),
    ({"providers": [{"name": "x", "provider_id": -1, "config": {}}]}, "providers[0].provider_id"),
    ({"providers": [{"name": "x", "provider_id": 1, "config": []}]}, "providers[0].config"),
    (
        # No "database" is fine (a provider without one, as upstream); one
        # that is not an object is not.
        {"providers": [{"name": "x", "provider_id": 1, "config": {"database": 5}}]},
        "providers[0].config.database",
    ),
    (
        {"providers": [provider_entry("x", 1, {"database": {"type": "nosuch"}})]},
        "providers[0].config.database.type",
    ),
    (
        {
            "providers": [
                provider_entry("x", 1, {"database": {"type": "map"}}),
                provider_entry("y", 1, {"database": {"type": "map"}}),
            ]
        },
        "providers[1].provider_id",
    ),
    (
        {
            "providers": [
                provider_entry("x", 1, {"database": {"type": "map"}}),
                provider_entry("x", 2, {"database": {"type": "map"}}),
            ]
        },
        "providers[1].name",
    ),
    (
        {"engine": 4, "providers": [provider_entry("x", 1, {"database": {"type": "map"}})]},
        "engine: must be an object",
    ),
    (
        {"providers": [provider_entry("x", 1, {"database": {"type": "map"}, "read_only": "yes"})]},
        "providers[0].config.read_only: must be true or false",
    ),
]


@pytest.mark.parametrize("doc,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_configs_exit_2_naming_the_key(tmp_path, doc, message):
    config = write_config(tmp_path, doc)
    r = run_daemon(tmp_path, config)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "running at" not in r.stdout


def test_two_providers_on_one_path_are_refused_before_opening(tmp_path):
    backend = "rocksdb" if "rocksdb" in available_backends else "log"
    database = backend_config(backend, tmp_path)
    config = write_config(
        tmp_path,
        {"providers": [provider_entry("a", 1, database), provider_entry("b", 2, database)]},
    )
    r = run_daemon(tmp_path, config)
    assert r.returncode == 2
    assert "providers[1].config.database.config.path" in r.stderr
    assert not os.path.exists(database["database"]["config"]["path"])  # nothing was opened


def test_a_provider_that_cannot_open_fails_with_its_name(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    backend = "rocksdb" if "rocksdb" in available_backends else "log"
    database = {"database": {"type": backend, "config": {"path": str(blocker / "db")}}}
    config = write_config(tmp_path, {"providers": [provider_entry("broken", 5, database)]})
    r = run_daemon(tmp_path, config)
    assert r.returncode == 1
    assert "cannot start" in r.stderr and "'broken'" in r.stderr


def test_log_file_and_level(tmp_path):
    config = write_config(
        tmp_path, {"providers": [provider_entry("m", 1, {"database": {"type": "map"}})]}
    )
    log_file = tmp_path / "server.log"
    daemon = Daemon(tmp_path, config, "--log-file", str(log_file), "--log-level", "debug")
    daemon.wait_ready()
    assert daemon.stop()[0] == 0
    text = log_file.read_text()
    assert "provider 'm' (id 1) serving a map database" in text
    assert "running at tcp://" in text and "stopped" in text


def test_client_connections_are_logged(tmp_path):
    config = write_config(
        tmp_path, {"providers": [provider_entry("m", 1, {"database": {"type": "map"}})]}
    )
    log_file = tmp_path / "server.log"
    daemon = Daemon(tmp_path, config, "--log-file", str(log_file))
    address = daemon.wait_ready()

    def logged(word, count):
        """The log lines with `word`, once there are `count` of them (30 s at most)."""
        deadline = time.monotonic() + 30
        while True:
            lines = [line for line in log_file.read_text().splitlines() if word in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    try:
        for n in (1, 2):  # a second client: a second pair of lines
            with Engine("tcp", mode=0) as client_engine:
                db = Client(client_engine).make_database_handle(address, 1)
                db.put("k", "v")
                assert len(logged(" connected", n)) == n, log_file.read_text()
                del db
            assert len(logged(" disconnected", n)) == n, log_file.read_text()
        lines = logged("client ", 4)
        assert len(lines) == 4
        assert all(" INFO client 127.0.0.1:" in line for line in lines), lines
    finally:
        assert daemon.stop()[0] == 0


def test_the_console_command_is_installed():
    command = shutil.which("yokan-server")
    if command is None:
        pytest.skip("no yokan-server on PATH: this package was not installed by pip or CMake")
    r = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Bedrock" in r.stdout


def test_address_file_appears_only_once_serving(tmp_path):
    config = write_config(
        tmp_path, {"providers": [provider_entry("m", 1, {"database": {"type": "map"}})]}
    )
    daemon = Daemon(tmp_path, config)
    deadline = time.monotonic() + 60
    while not daemon.address_file.exists():
        assert daemon.proc.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.01)
    address = daemon.address_file.read_text().strip()
    with Engine("tcp", mode=0) as engine:
        db = Client(engine).make_database_handle(address, 1)  # serving already
        db.put("k", "v")
        del db
    assert daemon.stop()[0] == 0


def test_a_request_in_progress_is_answered_at_sigterm(tmp_path):
    """A WAIT get parked on the provider gets an answer (TIMEOUT) from the
    stopping server, not a lost connection."""
    import threading

    from mochi.yokan.exception import YOKAN_ERR_TIMEOUT
    from mochi.yokan.mode import Mode

    config = write_config(
        tmp_path, {"providers": [provider_entry("m", 1, {"database": {"type": "map"}})]}
    )
    daemon = Daemon(tmp_path, config)
    address = daemon.wait_ready()
    outcome = []
    with Engine("tcp", mode=0) as engine:
        db = Client(engine).make_database_handle(address, 1)

        def waiter(handle):
            try:
                outcome.append(handle.get("never", mode=Mode.WAIT, timeout_ms=60_000))
            except Exception as e:  # noqa: BLE001 - the code is what is checked
                outcome.append(e)

        thread = threading.Thread(target=waiter, args=(db,))
        thread.start()
        time.sleep(0.5)  # parked on the provider by now
        code, _, err = daemon.stop()
        thread.join(timeout=30)
        del db
    assert code == 0, err
    assert len(outcome) == 1 and getattr(outcome[0], "code", None) == YOKAN_ERR_TIMEOUT, outcome


def test_a_read_only_provider_serves_reads_and_refuses_writes(tmp_path):
    from mochi.yokan.client import Exception as ClientError
    from mochi.yokan.exception import YOKAN_ERR_PERMISSION

    backend = "lmdb" if "lmdb" in available_backends else "log"
    stored = backend_config(backend, tmp_path)
    entries = [provider_entry("rw", 1, stored)]
    config = write_config(tmp_path, {"providers": entries})
    daemon = Daemon(tmp_path, config)
    address = daemon.wait_ready()
    with Engine("tcp", mode=0) as engine:
        db = Client(engine).make_database_handle(address, 1)
        if backend == "log":
            db.create_collection("c").store("{}")
        else:
            db.put("k", "v")
        del db
    assert daemon.stop()[0] == 0

    config = write_config(
        tmp_path, {"providers": [provider_entry("ro", 1, {**stored, "read_only": True})]}
    )
    log_file = tmp_path / "server.log"
    daemon = Daemon(tmp_path, config, "--log-file", str(log_file))
    address = daemon.wait_ready()
    with Engine("tcp", mode=0) as engine:
        db = Client(engine).make_database_handle(address, 1)
        coll = db.open_collection("c")
        with pytest.raises(ClientError) as info:
            coll.store("{}") if backend == "log" else db.put("k2", "v2")
        assert info.value.code == YOKAN_ERR_PERMISSION
        if backend == "log":
            assert coll.size() == 1
        else:
            assert db.get("k") == b"v" and not db.exists("k2")
        del coll, db
    assert daemon.stop()[0] == 0
    assert f"provider 'ro' (id 1) serving a {backend} database" in log_file.read_text()
    assert "(read-only)" in log_file.read_text()


def test_a_provider_without_database_receives_a_migration(tmp_path):
    config = write_config(tmp_path, {"providers": [provider_entry("spare", 3, {})]})
    daemon = Daemon(tmp_path, config)
    address = daemon.wait_ready()
    try:
        with Engine("tcp") as engine:
            spare = Client(engine).make_database_handle(address, 3)
            with pytest.raises(ClientException) as info:
                spare.put("k", "v")
            assert info.value.code == YOKAN_ERR_INVALID_DATABASE
            source = Provider(engine=engine, provider_id=1, config={"database": {"type": "map"}})
            db = Client(engine).make_database_handle(engine.addr(), 1)
            db.put("k", "v")
            source.migrate(address, 3)
            assert spare.get("k") == b"v"
            del db, spare, source
    finally:
        code, _, err = daemon.stop()
    assert code == 0, err
    assert "serving no database yet" in err
