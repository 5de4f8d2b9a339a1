"""The buffer protocol: bytes, bytearray, memoryview slices and numpy arrays
as keys, values and output buffers, without copies on the client.

    python buffer_protocol.py [ADDRESS]
"""

import sys

import numpy as np
from mochi.yokan.connect import database

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    # Any bytes-like object is a key or a value.
    db.put(bytearray(b"key-1"), memoryview(b"some bytes"))
    db.put(b"vector", np.arange(1000, dtype=np.float64))

    # Read straight into a preallocated numpy array (written in place).
    out = np.empty(1000, dtype=np.float64)
    size = db.get(b"vector", out)
    print("read", size, "bytes; sum =", out.sum())

    # Into a slice of a bigger buffer.
    arena = bytearray(32)
    view = memoryview(arena)[8:24]
    n = db.get(b"key-1", view)
    print("arena:", bytes(arena))
    print("value lives at arena[8:%d]" % (8 + n))

    # Large arrays move by rendezvous straight into the destination.
    big = np.random.default_rng(0).random(4 * 1024 * 1024)  # 32 MiB
    db.put("big", big)
    back = np.empty_like(big)
    db.get("big", back)
    print("32 MiB round trip equal:", bool((big == back).all()))
