"""Modes: change what an operation does. Combine them with ``|``.

python modes_example.py [ADDRESS]
"""

import sys
import threading
import time

from mochi.yokan.client import Exception as YokanError
from mochi.yokan.connect import database
from mochi.yokan.mode import Mode

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    # NEW_ONLY: store only if absent. EXIST_ONLY: only if present.
    db.put("counter", "0", mode=Mode.NEW_ONLY)
    try:
        db.put("counter", "1", mode=Mode.NEW_ONLY)
    except YokanError as e:
        print("NEW_ONLY on an existing key:", e)
    db.put("counter", "2", mode=Mode.EXIST_ONLY)
    print("counter =", db.get("counter"))

    # APPEND: extend a value (creating it if needed).
    db.put("log", "first;", mode=Mode.APPEND)
    db.put("log", "second;", mode=Mode.APPEND)
    print("log =", db.get("log"))

    # CONSUME: read and erase in one atomic step (a work queue).
    db.put("task", "compute something")
    print("took:", db.get("task", mode=Mode.CONSUME), "- still there?", db.exists("task"))

    # WAIT: block until the key exists; any put makes it exist.
    # WAIT | CONSUME: wait for a value, take it and erase it.
    def producer():
        time.sleep(0.2)
        db.put("result", "42")

    threading.Thread(target=producer).start()
    print("waited for:", db.get("result", mode=Mode.WAIT | Mode.CONSUME, timeout_ms=10000))

    # A wait can time out.
    try:
        db.exists("never", mode=Mode.WAIT, timeout_ms=200)
    except YokanError as e:
        print("gave up waiting:", e)

    # Incompatible pairs are refused before anything is sent.
    try:
        db.put("x", "y", mode=Mode.APPEND | Mode.NEW_ONLY)
    except YokanError as e:
        print("APPEND | NEW_ONLY:", e)

    # NO_RDMA: send a large value inline instead of by rendezvous.
    db.put("blob", bytes(1 << 20), mode=Mode.NO_RDMA)
    print("blob length:", db.length("blob"))
