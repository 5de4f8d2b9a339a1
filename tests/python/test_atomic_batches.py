"""Atomic batches: on every persistent backend that claims them, a batch write
(store_multi, update_multi, erase_multi of documents; put_multi and
erase_multi of keys) applies whole or not at all when the disk is full.

A provider in another process works on an 8 MiB tmpfs, which it fills with
documents until the first refusal. Then a ballast file next to its data sets
the free space to a series of levels, from "just above what the backend keeps
free" down to nothing; at each level every kind of batch is
tried, and each must either succeed entirely or fail with YOKAN_ERR_IO and
leave no trace: the same live documents and keys, the same size and last_id,
no id consumed. Then a SIGKILL and a restart (with space) must show exactly
what was acknowledged; ids are never reused; and with the space back the
refused batches go through.

The level 1 MiB + 4 KiB is where the log backend (which keeps 1 MiB free)
used to let an erase_multi of 200 ids erase about 136 of them, one page of
erase records, before refusing the rest, leaving the size counting them.

Mounting needs root (CI runs these tests as root); elsewhere they skip.
"""

import os
import random
import time
from pathlib import Path

import pytest
from conftest import ATOMIC_BATCHES, DOC_ONLY, backend_config, open_db
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_IO
from test_disk_full import CALL_MS, FREED, RESUME_S, disk, grow, servers  # noqa: F401

BACKENDS = [b for b in available_backends if b in ATOMIC_BATCHES]

KiB = 1 << 10
MiB = 1 << 20
# Free space left for the batches, largest first.
LEVELS = [MiB + 8 * KiB, MiB + 4 * KiB, MiB, 256 * KiB, 16 * KiB, 4 * KiB, 0]
DOC = 2 * KiB  # size of a stored document
BIG = 64  # documents per store_multi / update_multi at each level


def payload(tag, i, size=DOC):
    return random.Random(f"{tag}:{i}").randbytes(size)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def set_free(mnt, target):
    """Resizes the ballast so that about `target` bytes stay free on `mnt`."""
    ballast = mnt / "ballast"
    have = ballast.stat().st_size if ballast.exists() else 0
    size = max(0, have + free_bytes(mnt) - target)
    with open(ballast, "wb") as f:
        f.truncate(0)
    with open(ballast, "wb") as f:
        chunk = b"\xa5" * MiB
        left = size
        while left > 0:
            try:
                f.write(chunk[: min(left, MiB)])
                f.flush()
            except OSError:
                break  # the disk is full: as full as it gets
            left -= min(left, MiB)


class Model:
    """What was acknowledged: live documents, the next id, live keys."""

    def __init__(self, kv):
        self.kv = kv
        self.docs = {}
        self.next_id = 0
        self.keys = {}

    def connect(self, engine, server):
        self.db = Client(engine).make_database_handle(server.address, 42)
        self.coll = self.db.open_collection("c")

    def check(self):
        """The provider holds exactly the acknowledged state."""
        c = self.coll
        assert c.size(timeout_ms=CALL_MS) == len(self.docs)
        assert c.last_id(timeout_ms=CALL_MS) == self.next_id - 1
        listed = dict(c.scan(timeout_ms=CALL_MS))
        assert sorted(listed) == sorted(self.docs), "live document ids differ"
        changed = [i for i, d in self.docs.items() if listed[i] != d]
        assert not changed, f"documents {changed[:5]} do not hold what was acknowledged"
        if self.kv:
            # Documents are keys too, and so is the collection's metadata.
            assert self.db.count(timeout_ms=CALL_MS) == len(self.keys) + len(self.docs) + 1
            names = list(self.keys)
            assert self.db.get_multi(names, timeout_ms=CALL_MS) == [self.keys[k] for k in names]

    # Each batch: applied to the model on success; on failure it must be a
    # clean YOKAN_ERR_IO, and check() then proves nothing of it was applied.
    def attempt(self, what, call, apply):
        try:
            result = call()
        except ClientError as e:
            assert e.code == YOKAN_ERR_IO, f"{what} failed with {e.name}: {e}"
            self.check()
            return False
        apply(result)
        return True

    def store_multi(self, tag, n, size=DOC):
        docs = [payload(tag, i, size) for i in range(n)]

        def apply(ids):
            assert ids == list(range(self.next_id, self.next_id + n)), "ids not consecutive"
            self.docs.update(zip(ids, docs))
            self.next_id += n

        return self.attempt(
            "store_multi", lambda: self.coll.store_multi(docs, timeout_ms=CALL_MS), apply
        )

    def update_multi(self, tag, ids):
        docs = [payload(tag, i, DOC + 512) for i in range(len(ids))]
        return self.attempt(
            "update_multi",
            lambda: self.coll.update_multi(ids, docs, timeout_ms=CALL_MS),
            lambda _: self.docs.update(zip(ids, docs)),
        )

    def erase_multi(self, ids):
        def apply(_):
            for i in ids:
                self.docs.pop(i, None)

        return self.attempt(
            "erase_multi", lambda: self.coll.erase_multi(ids, timeout_ms=CALL_MS), apply
        )

    def put_multi(self, tag, n):
        pairs = [(f"{tag}:{i:04d}", payload(tag, i)) for i in range(n)]
        return self.attempt(
            "put_multi",
            lambda: self.db.put_multi(pairs, timeout_ms=CALL_MS),
            lambda _: self.keys.update(pairs),
        )

    def erase_keys(self, names):
        def apply(_):
            for k in names:
                self.keys.pop(k, None)

        return self.attempt(
            "erase_multi (keys)", lambda: self.db.erase_multi(names, timeout_ms=CALL_MS), apply
        )


def retry_until_space(action):
    """Runs a batch until it succeeds (the backend may take a while to notice
    the space is back: RocksDB polls every few seconds); returns whether it did."""
    deadline = time.monotonic() + RESUME_S
    while not action():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_disk_batches_apply_whole_or_not_at_all(disk, servers, backend):  # noqa: F811
    config = backend_config(backend, disk)
    model = Model(kv=backend not in DOC_ONLY)
    server = servers(config)
    assert server.address, server.exit_report()
    failures = 0
    with Engine("na+sm", mode=0) as e:
        model.connect(e, server)
        model.db.create_collection("c", timeout_ms=CALL_MS)
        for chunk in range(5):  # 500 small documents to erase later
            assert model.store_multi(f"seed{chunk}", 100)
        if model.kv:
            assert model.put_multi("seedkv", 200)
        model.check()
        # Fill the rest through the provider, as a real disk fills: single
        # documents until the first refusal (bounded; the ballast leaves 3 MiB).
        set_free(disk, 3 * MiB)
        for i in range(2000):
            if not model.store_multi(f"fill{i}", 1, 4 * KiB):
                break
        else:
            pytest.fail("3 MiB took 2000 documents of 4 KiB")
        failures = 1

        for level, free in enumerate(LEVELS):
            live = sorted(model.docs)
            # Each batch starts at this level of free space; 200 ids to erase:
            # live ones, one twice, and one never allocated.
            batches = [
                (model.erase_multi, live[:199] + live[:1] + [model.next_id + 1000]),
                (model.store_multi, f"big{level}", BIG),
                (model.update_multi, f"up{level}", live[-BIG:]),
            ]
            if model.kv:
                batches.append((model.put_multi, f"kv{level}", BIG))
                batches.append((model.erase_keys, sorted(model.keys)[:100]))
            for batch, *args in batches:
                set_free(disk, free)
                failures += not batch(*args)
            print(f"{backend}: {free} bytes free, {failures} refused so far")
        # 12 MiB in one batch cannot fit anywhere on an 8 MiB disk (not even
        # in pages that the erases freed inside the files): refused, nothing applied.
        set_free(disk, 0)
        assert not model.store_multi("huge", 192, 64 * KiB), "12 MiB fitted on an 8 MiB disk"
        failures += 1
        assert server.alive(), server.exit_report()
        server.kill()  # SIGKILL on the full disk: what was acknowledged stays

    assert failures, "no batch failed: the disk never got full enough to test anything"
    os.remove(disk / "ballast")
    grow(disk, FREED)  # the restart has room (RocksDB wants a memtable's worth)
    server = servers(config)
    assert server.address, server.exit_report()
    with Engine("na+sm", mode=0) as e:
        model.connect(e, server)
        model.check()
        # With space: the batches go through, with fresh ids.
        before = model.next_id
        assert retry_until_space(lambda: model.store_multi("after", BIG))
        assert min(i for i in model.docs if i >= before) == before
        assert model.erase_multi(sorted(model.docs)[:200])
        if model.kv:
            assert model.put_multi("afterkv", BIG)
            assert model.erase_keys(sorted(model.keys)[:100])
        model.check()
    assert server.terminate() == 0
    print(f"{backend}: {failures} batches refused cleanly on the full disk")


@pytest.mark.skipif("log" not in available_backends, reason="the log backend is not compiled")
def test_log_replays_a_batch_whole_or_not_at_all(engine, tmp_path):
    """A crash can tear the last write of the log file anywhere, or leave
    garbage in it: opening applies a batch only when all of it is there and
    intact. Simulated by cutting the file at many points inside a batch, and
    by flipping one byte of it."""
    log = Path(backend_config("log", tmp_path)["database"]["config"]["path"]) / "yokan.log"
    first = [payload("first", i, 100) for i in range(10)]
    provider, db = open_db(engine, "log", tmp_path)
    db.create_collection("c")
    coll = db.open_collection("c")
    assert coll.store_multi(first) == list(range(10))
    start = log.stat().st_size
    assert coll.store_multi([payload("second", i, 100) for i in range(20)]) == list(range(10, 30))
    end = log.stat().st_size
    coll.erase_multi([0, 1, 2])  # a later batch: lost along with the torn one
    del coll, db, provider
    whole = log.read_bytes()

    def reopen_and_check(data, what):
        log.write_bytes(data)
        provider, db = open_db(engine, "log", tmp_path)
        coll = db.open_collection("c")
        assert coll.size() == 10, what
        assert coll.last_id() == 9, what
        assert list(coll.scan()) == list(enumerate(first)), what
        assert log.stat().st_size == start, f"{what}: the torn tail was not cut off"
        assert coll.store(b"next") == 10, what  # the file takes writes after it
        del coll, db, provider

    cuts = sorted(
        {start + 1, end - 1, end - 4, end - 8, *random.Random(7).sample(range(start, end), 30)}
    )
    for cut in cuts:
        reopen_and_check(whole[:cut], f"cut at {cut - start} of a {end - start}-byte batch")
    for at in (start + 20, (start + end) // 2, end - 6):
        flipped = bytearray(whole)
        flipped[at] ^= 0x40
        reopen_and_check(bytes(flipped), f"byte {at - start} of the batch flipped")
