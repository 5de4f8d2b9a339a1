"""Uniform client adapters over Yokan and Redis for the benchmark workloads.

Each adapter offers the same small surface (single ops, batches, large values)
so that ``workloads.py`` runs identical loops against either store.
"""

import json


class RedisTarget:
    """redis-py (with hiredis when installed) against a local redis-server."""

    name = "redis"

    def __init__(self, port):
        import redis

        self._r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
        self._r.ping()
        self.parser = "hiredis" if _has_hiredis() else "python"

    # -- single operations ------------------------------------------------

    def put(self, key, value):
        self._r.set(key, value)

    def get(self, key):
        return self._r.get(key)

    def exists(self, key):
        return self._r.exists(key) == 1

    def erase(self, key):
        self._r.delete(key)

    # -- batches ----------------------------------------------------------

    def batch_variants(self, keys, values):
        """(label, put, get, check) for one batch; check(result) -> bool."""
        flat = [x for kv in zip(keys, values) for x in kv]
        r = self._r

        def put():
            r.execute_command("MSET", *flat)

        def get():
            return r.mget(keys)

        return [("MSET/MGET", put, get, lambda res: res == values)]

    # -- large values -----------------------------------------------------

    def put_large(self, key, array):
        self._r.set(key, memoryview(array).cast("B"))

    def get_large(self, key, out):
        data = self._r.get(key)
        return len(data), data

    def put_many(self, keys, values):
        self._r.execute_command("MSET", *[x for kv in zip(keys, values) for x in kv])

    def scan(self, cursor, pattern, count):
        return self._r.scan(cursor=cursor, match=pattern, count=count)

    def has_listing(self):
        return True

    def close(self):
        self._r.close()


def _has_hiredis():
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


class YokanTarget:
    """A Yokan database handle, to a provider in this process or another one."""

    name = "yokan"

    def __init__(
        self,
        protocol,
        address=None,
        provider_id=42,
        engine_config=None,
        backend_config='{"database": {"type": "map"}}',
        shards=None,
    ):
        from mochi.margo import Engine
        from mochi.yokan.client import Client

        config = json.dumps(engine_config) if engine_config else ""
        self._provider = None
        if address is None and not shards:
            # In-process: this engine listens and serves the provider too.
            from mochi.yokan.server import Provider

            self._engine = Engine(protocol, config=config)
            self._provider = Provider(
                engine=self._engine, provider_id=provider_id, config=backend_config
            )
            address = self._engine.addr()
        else:
            self._engine = Engine(protocol, mode=0, config=config)
        self._client = Client(self._engine)
        if shards:
            # A database sharded over (address, provider id) pairs, as a
            # group's ShardedDatabase routes and fans out.
            from mochi.yokan.group import ShardedDatabase

            self._db = ShardedDatabase([self._client.make_database_handle(a, p) for a, p in shards])
        else:
            self._db = self._client.make_database_handle(address, provider_id)

    # -- single operations ------------------------------------------------

    def put(self, key, value):
        self._db.put(key, value)

    def get(self, key):
        return self._db.get(key)

    def exists(self, key):
        return self._db.exists(key)

    def erase(self, key):
        self._db.erase(key)

    # -- batches ----------------------------------------------------------

    def batch_variants(self, keys, values):
        db = self._db
        n = len(keys)
        vsize = len(values[0])
        kbuf = b"".join(keys)
        ksizes = [len(k) for k in keys]
        vbuf = b"".join(values)
        vsizes = [len(v) for v in values]
        out = bytearray(vsize * n)

        def put_multi():
            db.put_multi(keys, values)

        def get_multi():
            return db.get_multi(keys)

        def put_packed():
            db.put_packed(kbuf, ksizes, vbuf, vsizes)

        def get_packed():
            return db.get_packed(kbuf, ksizes, out)

        def check_packed(sizes):
            return list(sizes) == vsizes and bytes(out) == vbuf

        return [
            ("put_multi/get_multi", put_multi, get_multi, lambda res: list(res) == values),
            ("put_packed/get_packed", put_packed, get_packed, check_packed),
        ]

    # -- large values -----------------------------------------------------

    def put_large(self, key, array):
        self._db.put(key, array)

    def get_large(self, key, out):
        return self._db.get(key, out), out

    def put_many(self, keys, values):
        self._db.put_multi(keys, values)

    def has_listing(self):
        return hasattr(self._db, "list_keys")

    def list_keys(self, *args, **kwargs):
        return self._db.list_keys(*args, **kwargs)

    def list_keys_packed(self, *args, **kwargs):
        return self._db.list_keys_packed(*args, **kwargs)

    def scan_keys(self, prefix, page):
        return self._db.scan(b"", prefix, batch_size=page, ignore_values=True)

    def close(self):
        del self._db
        del self._client
        if self._provider is not None:
            del self._provider
        self._engine.finalize()


def make_target(spec):
    """An adapter from a JSON-able spec (see ``client_worker.py``)."""
    kind = spec["kind"]
    if kind == "redis":
        return RedisTarget(spec["port"])
    if kind == "yokan":
        return YokanTarget(
            spec["protocol"],
            address=spec.get("address"),
            provider_id=spec.get("provider_id", 42),
            engine_config=spec.get("engine_config"),
            shards=spec.get("shards"),
        )
    raise ValueError(f"unknown target kind {kind!r}")
