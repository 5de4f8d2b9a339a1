"""Batches: one round trip for many keys (multi and packed forms).

python batch_operations.py [ADDRESS]
"""

import sys

from mochi.yokan.connect import database

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    keys = [f"sample:{i:04d}" for i in range(100)]
    values = [f"value {i}" for i in range(100)]

    db.put_multi(keys, values)  # keys and values
    db.put_multi([("extra:a", "A"), ("extra:b", "B")])  # or (key, value) pairs
    print("count:", db.count())

    print("first three:", db.get_multi(keys[:3]))  # list of bytes / None
    print("exists:", db.exists_multi(["sample:0001", "nope"]))
    print("lengths:", db.length_multi(["sample:0001", "nope"]))

    # Preallocated buffers: sizes back, None for absent, -1 for too small.
    buffers = [bytearray(16), bytearray(4), bytearray(16)]
    sizes = db.get_multi(list(zip(["sample:0010", "sample:0011", "missing"], buffers)))
    print("sizes:", sizes, bytes(buffers[0][: sizes[0]]))

    # Packed: all keys in one buffer plus their sizes; values back to back.
    packed_keys = b"".join(k.encode() for k in keys[:10])
    key_sizes = [len(k) for k in keys[:10]]
    out = bytearray(1024)
    sizes = db.get_packed(packed_keys, key_sizes, out)
    print("packed sizes:", sizes)
    print("first packed value:", bytes(out[: sizes[0]]))

    db.erase_multi(keys[50:])
    print("count after erase_multi:", db.count())
