"""Snapshot and restore: copy a live database to a directory, then serve the
copy from another provider (docs/snapshot.rst).

    python snapshot.py
"""

import json
import tempfile
from pathlib import Path

from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

with tempfile.TemporaryDirectory() as tmp, Engine("tcp") as engine:
    work = Path(tmp)
    # A provider with a database, a few keys in it.
    source = Provider(engine=engine, provider_id=1, config={"database": {"type": "map"}})
    db = Client(engine).make_database_handle(engine.addr(), 1)
    db.put_multi([(f"key{i}", f"value{i}") for i in range(100)])

    # A consistent copy; the provider keeps serving meanwhile.
    source.snapshot(str(work / "snap"))
    manifest = json.loads((work / "snap" / "yokan-snapshot.json").read_text())
    print("snapshot of a", manifest["type"], "database:", manifest["files"])

    # A provider started without a database answers YOKAN_ERR_INVALID_DATABASE
    # until a database is restored into it.
    copy = Provider(engine=engine, provider_id=2, config={})
    copy.restore(str(work / "snap"), new_root=str(work / "restored"))
    restored = Client(engine).make_database_handle(engine.addr(), 2)
    print("restored", restored.count(), "keys; key7 =", restored.get("key7").decode())

    del db, restored, source, copy
