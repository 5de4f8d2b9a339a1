"""Error handling: every error is a mochi.yokan.exception.Exception with a .code;
client calls raise mochi.yokan.client.Exception, the server side
mochi.yokan.server.Exception.

    python error_handling.py
"""

import mochi.yokan.client
import mochi.yokan.exception as yerr
import mochi.yokan.server
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.mode import Mode
from mochi.yokan.server import Provider

with Engine("tcp") as engine:
    # Server side: a bad configuration.
    try:
        Provider(engine=engine, provider_id=1, config='{"database": {"type": "nope"}}')
    except mochi.yokan.server.Exception as e:
        assert e.code == yerr.YOKAN_ERR_INVALID_CONFIG
        print("bad config:", e)

    provider = Provider(engine=engine, provider_id=1, config='{"database": {"type": "map"}}')
    db = Client(engine).make_database_handle(engine.addr(), 1)

    # Missing key.
    try:
        db.get("missing")
    except mochi.yokan.client.Exception as e:
        assert e.code == yerr.YOKAN_ERR_KEY_NOT_FOUND
        print("missing key:", e)

    # Buffer too small.
    db.put("key", "a value longer than the buffer")
    try:
        db.get("key", bytearray(4))
    except yerr.Exception as e:  # the common base class catches everything
        assert e.code == yerr.YOKAN_ERR_BUFFER_SIZE
        print("too small:", e)

    # Unsupported mode combinations, empty keys, read-only buffers.
    attempts = [
        (db.put, ("k", "v"), {"mode": Mode.NEW_ONLY | Mode.EXIST_ONLY}),
        (db.put, ("", "v"), {}),
        (db.get, ("key", b"read-only bytes object"), {}),
    ]
    for call, args, kwargs in attempts:
        try:
            call(*args, **kwargs)
        except yerr.Exception as e:
            print(f"code {e.code}:", e)

    # Network errors: nobody at that address.
    try:
        Client(engine).make_database_handle("tcp://127.0.0.1:1", 1)
    except yerr.Exception as e:
        assert e.code == yerr.YOKAN_ERR_FROM_MERCURY
        print("unreachable:", e)

    # The provider is unharmed by all of the above.
    print("still serving:", db.get("key"))
    del db, provider
