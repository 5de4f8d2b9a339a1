"""A full disk, on every persistent backend: a provider in another process
writes 4 KiB values into an 8 MiB tmpfs until the first write fails.

Required: that write fails with YOKAN_ERR_IO and a message that says the
device is full; later writes fail the same way (or succeed, and then count as
acknowledged); the provider stays alive and keeps serving reads; after a
SIGKILL, a restart on the still-full disk either opens the data (reads work)
or fails with a clear error (an exit status, not a signal); once space is back
writes work again; nothing that was acknowledged is ever lost.

Mounting needs root (CI runs these tests as root); elsewhere they skip.
"""

import json
import random
import subprocess
import sys
import time

import pytest
from conftest import DOC_ONLY, PERSISTENT, SERVER, backend_config
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_IO, YOKAN_ERR_OP_FORBIDDEN

MiB = 1 << 20
DISK = 8 * MiB
VALUE_SIZE = 4096
# Bounds the fill: twice what the disk could hold.
MAX_WRITES = 2 * DISK // VALUE_SIZE
# Generous per-call budget: a hung write fails the test instead of hanging it.
CALL_MS = 20000.0
# Freeing space grows the tmpfs to this (a cap: tmpfs uses only what is
# written). RocksDB resumes writing once one memtable (64 MiB) fits.
FREED = 256 * MiB
# How long a provider may take to notice the space is back (RocksDB polls
# every 5 s); a liveness bound, not a speed requirement.
RESUME_S = 60
# How libraries and the kernel spell a full device.
NO_SPACE_WORDS = ("no space left on device", "disk full", "enospc", "not enough space")

BACKENDS = [b for b in available_backends if b in PERSISTENT]


def says_no_space(message):
    text = message.lower()
    return any(w in text for w in NO_SPACE_WORDS)


def value(i):
    """Incompressible, reproducible 4 KiB values (compression cannot cheat)."""
    return random.Random(i).randbytes(VALUE_SIZE)


@pytest.fixture
def disk(tmp_path):
    """A directory on a fresh 8 MiB tmpfs, unmounted at teardown."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs to fill (needs root): " + r.stderr.strip())
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def grow(mnt, size):
    """Frees space: the tmpfs grows to `size` bytes."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


class Server:
    """serve.py in a child process; `address` is empty if it did not start."""

    def __init__(self, config):
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "na+sm", json.dumps(config), "42"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.address = self.proc.stdout.readline().strip()

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def terminate(self):
        """SIGTERM (a clean close, also on a full disk); returns the exit status."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung on SIGTERM"

    def exit_report(self):
        """(exit status, stderr) of a server that ended."""
        rc = self.proc.wait(timeout=30)
        return rc, self.proc.stderr.read()


@pytest.fixture
def servers(disk):
    """Factory for Servers; every one still running is killed before the unmount."""
    started = []

    def start(config):
        started.append(Server(config))
        return started[-1]

    yield start
    for s in started:
        if s.alive():
            s.kill()
        s.proc.stdout.close()
        s.proc.stderr.close()


class Data:
    """What the test wrote and the provider acknowledged, per backend kind:
    key/value pairs, or documents for the document-only stores."""

    def __init__(self, backend):
        self.docs_only = backend in DOC_ONLY
        self.acked = {}  # key (or document id) -> value
        self.erased = set()

    def connect(self, engine, server):
        self.db = Client(engine).make_database_handle(server.address, 42)
        self.coll = self.db.open_collection("docs")

    def setup(self):
        self.db.create_collection("docs", timeout_ms=CALL_MS)
        self.store_doc(b"first document")

    def store_doc(self, doc):
        doc_id = self.coll.store(doc, timeout_ms=CALL_MS)
        self.acked[("doc", doc_id)] = doc

    def write(self, i):
        """Writes item i (a 4 KiB value); raises ClientError if refused."""
        if self.docs_only:
            self.store_doc(value(i))
        else:
            self.db.put(f"k{i:06d}", value(i), timeout_ms=CALL_MS)
            self.acked[f"k{i:06d}"] = value(i)

    def overwrite(self, key, new):
        self.db.put(key, new, timeout_ms=CALL_MS)
        self.acked[key] = new

    def write_batch(self, first, n):
        items = [(f"k{i:06d}", value(i)) for i in range(first, first + n)]
        self.db.put_multi(items, timeout_ms=CALL_MS)
        self.acked.update(items)

    def erase(self, key):
        if isinstance(key, tuple):
            self.coll.erase(key[1], timeout_ms=CALL_MS)
        else:
            self.db.erase(key, timeout_ms=CALL_MS)
        del self.acked[key]
        self.erased.add(key)

    def read(self, key):
        if isinstance(key, tuple):
            return self.coll.load(key[1], timeout_ms=CALL_MS)
        return self.db.get(key, timeout_ms=CALL_MS)

    def read_or_error(self, key):
        try:
            return self.read(key)
        except ClientError as e:
            return e

    def exists(self, key):
        if isinstance(key, tuple):
            return self.coll.length(key[1], timeout_ms=CALL_MS) is not None
        return self.db.exists(key, timeout_ms=CALL_MS)

    def check(self):
        """Every acknowledged item reads back as written; erased ones stay gone."""
        lost = [k for k, v in self.acked.items() if self.read_or_error(k) != v]
        assert not lost, f"{len(lost)} acknowledged items lost or changed, e.g. {lost[:3]}"
        back = [k for k in self.erased if self.exists(k)]
        assert not back, f"erased items came back: {back}"


def refused_for_space(action, *args):
    """Runs a write that may not fit: it succeeds, or fails with YOKAN_ERR_IO
    saying the device is full. Returns the error (None on success)."""
    try:
        action(*args)
    except ClientError as e:
        assert e.code == YOKAN_ERR_IO, f"a write on a full disk failed with {e.name}: {e}"
        assert says_no_space(str(e)), f"the error does not say the disk is full: {e}"
        return e
    return None


def fill(data):
    """Writes 4 KiB items until the first refusal (bounded); returns (next
    index, the error)."""
    for i in range(MAX_WRITES):
        try:
            data.write(i)
        except ClientError as e:
            return i + 1, e
    pytest.fail(f"{MAX_WRITES} writes of {VALUE_SIZE} bytes all fitted on an 8 MiB disk")


def write_when_space_is_back(data, i):
    """Writes item i, retrying for RESUME_S while the provider still refuses
    cleanly (YOKAN_ERR_IO); returns how long it took."""
    start = time.monotonic()
    while True:
        try:
            data.write(i)
            return time.monotonic() - start
        except ClientError as e:
            assert e.code == YOKAN_ERR_IO, f"{e.name}: {e}"
            if time.monotonic() - start > RESUME_S:
                raise
            time.sleep(0.2)


def check_first_refusal(err):
    assert err.code == YOKAN_ERR_IO, f"the first refused write failed with {err.name}: {err}"
    assert says_no_space(str(err)), f"the error does not say the disk is full: {err}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_disk_full_then_sigkill_and_restart(disk, servers, backend):
    config = backend_config(backend, disk)
    data = Data(backend)
    server = servers(config)
    assert server.address, server.exit_report()
    with Engine("na+sm", mode=0) as e:
        data.connect(e, server)
        data.setup()
        i, err = fill(data)
        check_first_refusal(err)
        assert len(data.acked) > 100, "the disk filled before any real data was written"

        # More writes on the full disk: each fits or is refused cleanly.
        for _ in range(3):
            refused_for_space(data.write, i)
            i += 1
        refused_for_space(data.store_doc, value(i))
        i += 1
        if not data.docs_only:
            old = next(k for k in data.acked if not isinstance(k, tuple))
            refused_for_space(data.overwrite, old, value(10**6))
            refused_for_space(data.write_batch, i, 4)
            i += 4
        # Erases (a document, and a key): done, or refused cleanly.
        for key in {next(iter(data.acked)), next(k for k in data.acked if k != ("doc", 0))}:
            refused_for_space(data.erase, key)

        assert server.alive(), server.exit_report()
        data.check()
        server.kill()  # SIGKILL while the disk is full

    # Restart on the still-full disk: opens (at least for reading) or fails clearly.
    server = servers(config)
    if server.address:
        with Engine("na+sm", mode=0) as e:
            data.connect(e, server)
            data.check()
            try:
                data.write(i)
            except ClientError as err:
                assert err.code in (YOKAN_ERR_IO, YOKAN_ERR_OP_FORBIDDEN), f"{err.name}: {err}"
            i += 1
            assert server.alive(), server.exit_report()
    else:
        rc, stderr = server.exit_report()
        assert rc > 0, f"restart on a full disk died of signal {-rc}:\n{stderr}"
        assert "assert" not in stderr.lower(), stderr
        assert says_no_space(stderr), f"restart failed without saying why:\n{stderr}"

    # Space is back: writes work again (after a restart if the provider could
    # not write), and everything acknowledged is still there.
    grow(disk, FREED)
    writable = False
    if server.address:
        with Engine("na+sm", mode=0) as e:
            data.connect(e, server)
            try:
                data.write(i)
                writable = True
            except ClientError:
                pass  # opened read-only: a restart brings writes back
            i += 1
        if not writable:
            assert server.terminate() == 0
    if not writable:
        server = servers(config)
        assert server.address, server.exit_report()
    with Engine("na+sm", mode=0) as e:
        data.connect(e, server)
        for _ in range(20):
            data.write(i)
            i += 1
        data.check()
    assert server.terminate() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_resume_when_space_is_freed(disk, servers, backend):
    """The same provider, never restarted: refused while full, writing again
    once the disk has room; then a SIGKILL and a restart lose nothing."""
    config = backend_config(backend, disk)
    data = Data(backend)
    server = servers(config)
    assert server.address, server.exit_report()
    with Engine("na+sm", mode=0) as e:
        data.connect(e, server)
        data.setup()
        i, err = fill(data)
        check_first_refusal(err)
        grow(disk, FREED)
        waited = write_when_space_is_back(data, i)
        print(f"{backend}: writing again {waited:.1f} s after space was freed")
        i += 1
        for _ in range(20):
            data.write(i)
            i += 1
        data.store_doc(b"after the disk was freed")
        assert server.alive(), server.exit_report()
        data.check()
        server.kill()  # what was written after the failure must be durable too
    server = servers(config)
    assert server.address, server.exit_report()
    with Engine("na+sm", mode=0) as e:
        data.connect(e, server)
        data.check()
    assert server.terminate() == 0
