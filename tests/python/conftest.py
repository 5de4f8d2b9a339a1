"""Shared fixtures: an engine, a provider per compiled backend, and providers
running in another process."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).resolve().parent / "serve.py"

PERSISTENT = {"rocksdb", "leveldb", "lmdb", "berkeleydb", "gdbm", "tkrzw", "log"}
# Persistent backends whose batches apply whole or not at all, also across a
# SIGKILL (BackendTraits::atomic_batches; the README says why not the others).
ATOMIC_BATCHES = {"rocksdb", "leveldb", "lmdb", "log", "gdbm"}
# Document stores: collections only, every key/value call is OP_UNSUPPORTED.
DOC_ONLY = {"array", "log"}
# Backends whose values must be empty.
VALUELESS = {"set", "unordered_set"}
SORTED = {"map", "set", "rocksdb", "leveldb", "lmdb", "berkeleydb", "tkrzw"}
# `null` is listed (a provider opens it) but stores nothing, so no test of
# stored data can run on it; test_basic checks what it does answer.
STORING_BACKENDS = [b for b in available_backends if b != "null"]
KV_BACKENDS = [b for b in STORING_BACKENDS if b not in DOC_ONLY]
VALUED_BACKENDS = [b for b in KV_BACKENDS if b not in VALUELESS]
# Every backend with collections: the valued key/value ones and the document stores.
COLLECTION_BACKENDS = VALUED_BACKENDS + [b for b in STORING_BACKENDS if b in DOC_ONLY]


def backend_config(backend, tmp_path):
    """A provider config for `backend`, with its files under tmp_path."""
    config = {}
    if backend in {"rocksdb", "leveldb", "lmdb", "log"}:
        config["path"] = str(tmp_path / f"{backend}-db")
    elif backend in {"gdbm", "tkrzw"}:
        config["path"] = str(tmp_path / f"{backend}.db")
    elif backend == "berkeleydb":
        config["path"] = str(tmp_path / "bdb.db")
    return {"database": {"type": backend, "config": config}}


@pytest.fixture
def engine():
    with Engine("tcp") as e:
        yield e


def open_db(engine, backend, tmp_path, provider_id=42):
    provider = Provider(
        engine=engine, provider_id=provider_id, config=json.dumps(backend_config(backend, tmp_path))
    )
    db = Client(engine).make_database_handle(engine.addr(), provider_id)
    return provider, db


@contextlib.contextmanager
def serving(engine, backend, tmp_path):
    """A Database on a provider of `backend`; the provider stops when the block ends."""
    provider, db = open_db(engine, backend, tmp_path)
    try:
        yield db
    finally:
        del db, provider


@pytest.fixture(params=KV_BACKENDS)
def any_db(request, engine, tmp_path):
    """(backend name, Database) for every compiled key/value backend."""
    with serving(engine, request.param, tmp_path) as db:
        yield request.param, db


@pytest.fixture(params=VALUED_BACKENDS)
def db(request, engine, tmp_path):
    """A Database on every compiled backend that stores values."""
    with serving(engine, request.param, tmp_path) as handle:
        yield handle


SORTED_VALUED = [b for b in VALUED_BACKENDS if b in SORTED]
UNSORTED = [b for b in KV_BACKENDS if b not in SORTED]


@pytest.fixture(params=SORTED_VALUED)
def sorted_db(request, engine, tmp_path):
    """A Database on every compiled sorted backend that stores values."""
    with serving(engine, request.param, tmp_path) as handle:
        yield handle


@pytest.fixture(params=UNSORTED)
def unsorted_db(request, engine, tmp_path):
    with serving(engine, request.param, tmp_path) as handle:
        yield handle


@pytest.fixture
def map_db(engine, tmp_path):
    with serving(engine, "map", tmp_path) as handle:
        yield handle


class ChildServer:
    """A server in a child process that prints its address as its first line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError("server did not start: " + self.proc.stderr.read())
        self.address = line

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            # A stopped (SIGSTOP) child must run to handle `sig`; a running
            # one ignores SIGCONT.
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


class RemoteProvider(ChildServer):
    """A provider in a child process (tests/python/serve.py)."""

    def __init__(self, protocol, config, provider_id=42):
        super().__init__(
            [sys.executable, str(SERVER), protocol, json.dumps(config), str(provider_id)]
        )


def wait_stopped(pid, timeout=10.0):
    """Waits until every thread of `pid` has stopped after a SIGSTOP: kill()
    returns before they have, and a thread spinning on the network may
    still answer for a moment. Raises AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(state == "T" for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop")


@pytest.fixture
def remote():
    """Factory: remote(protocol, config) -> RemoteProvider, stopped at teardown."""
    started = []

    def start(protocol="na+sm", config=None, provider_id=42):
        server = RemoteProvider(protocol, config or {"database": {"type": "map"}}, provider_id)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
