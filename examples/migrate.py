"""Migration: move a database to another provider (here on a second engine)
and let a client follow it (docs/snapshot.rst).

    python migrate.py
"""

import tempfile
from pathlib import Path

import mochi.yokan.client
import mochi.yokan.exception as yerr
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

with tempfile.TemporaryDirectory() as tmp, Engine("tcp") as a, Engine("tcp") as b:
    work = Path(tmp)
    source = Provider(
        engine=a,
        provider_id=1,
        config={"database": {"type": "map"}},
    )
    # The destination starts without a database.
    destination = Provider(engine=b, provider_id=7, config={})

    db = Client(a).make_database_handle(a.addr(), 1)
    db.put_multi([(f"key{i}", f"value{i}") for i in range(1000)])

    source.migrate(b.addr(), 7, new_root=str(work / "moved"))

    # The old provider now answers YOKAN_ERR_MIGRATED and says where to go.
    try:
        db.get("key1")
    except mochi.yokan.client.Exception as e:
        assert e.code == yerr.YOKAN_ERR_MIGRATED
        print("moved:", mochi.yokan.client.migration_target(e))
        db = db.follow_migration(e)
    print("key1 =", db.get("key1").decode(), "from provider", db.provider_id)
    print(db.count(), "keys at the destination")

    del db, source, destination
