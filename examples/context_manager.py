"""Context managers release everything in order, even when an error escapes.

python context_manager.py
"""

from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

CONFIG = '{"database": {"type": "map"}}'

with Engine("tcp") as engine:
    with Provider(engine=engine, provider_id=7, config=CONFIG) as provider:
        with Client(engine) as client:
            with client.make_database_handle(engine.addr(), 7) as db:
                db.put("session", "open")
                print("inside:", db.get("session"))
        print("provider", provider.provider_id, "config:", provider.config["database"])
    # Leaving the Provider block stopped serving; the engine is finalized next.
print("engine finalized:", engine.finalized)
