"""Quickstart: a provider and a client in one process, a put and a get."""

from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

with Engine("tcp") as engine:
    provider = Provider(engine=engine, provider_id=42, config='{"database": {"type": "map"}}')
    client = Client(engine)
    db = client.make_database_handle(engine.addr(), provider_id=42)

    db.put("greeting", "hello, yokan")
    print(db.get("greeting").decode())  # -> hello, yokan
    print("keys stored:", db.count())

    del db, provider
