"""Shared by test_snapshot.py and test_migrate.py: write numbered items to a
database of any backend and read back which of them are there."""

import json

from conftest import DOC_ONLY, VALUELESS, backend_config
from mochi.yokan.client import Client
from mochi.yokan.server import Provider


def key(i):
    return f"k{i:07d}"


def value(backend, i, big=False):
    if backend in VALUELESS:
        return b""
    if big:
        return bytes([i % 251]) * (1 << 20)
    return f"value-{i}".encode()


class Items:
    """Items 0..n-1 on a database: pairs on a key/value backend, documents
    of the collection "c" (document i has id i) on a document store."""

    def __init__(self, backend, db):
        self.backend = backend
        self.db = db
        self.docs = backend in DOC_ONLY
        if self.docs:
            try:
                self.coll = db.create_collection("c")
            except Exception:
                self.coll = db.open_collection("c")

    def write(self, i, big=False):
        v = value(self.backend, i, big)
        if self.docs:
            assert self.coll.store(v) == i
        else:
            self.db.put(key(i), v)

    def write_range(self, start, stop):
        if self.docs:
            self.coll.store_multi([value(self.backend, i) for i in range(start, stop)])
        else:
            self.db.put_multi([(key(i), value(self.backend, i)) for i in range(start, stop)])

    def present(self, upto):
        """The indices in [0, upto) that are stored, each with the right value."""
        found = []
        if self.docs:
            size = self.coll.size()
            for i in range(min(size, upto)):
                assert self.coll.load(i) in (value(self.backend, i), value(self.backend, i, True))
                found.append(i)
            return found
        flags = self.db.exists_multi([key(i) for i in range(upto)]) if upto else []
        for i, there in enumerate(flags):
            if there:
                got = self.db.get(key(i))
                assert got in (value(self.backend, i), value(self.backend, i, True)), (i, got[:20])
                found.append(i)
        return found


def provider(engine, backend, root, provider_id, **extra):
    config = backend_config(backend, root)
    config.update(extra)
    p = Provider(engine=engine, provider_id=provider_id, config=json.dumps(config))
    return p, Client(engine).make_database_handle(engine.addr(), provider_id)


def empty_provider(engine, provider_id, **extra):
    p = Provider(engine=engine, provider_id=provider_id, config=json.dumps(extra))
    return p, Client(engine).make_database_handle(engine.addr(), provider_id)
