"""Ordered listing: list_keys, list_keyvals, their packed forms, and iter.

python list_operations.py [ADDRESS]
"""

import sys

from mochi.yokan.connect import database
from mochi.yokan.mode import Mode

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    db.put_multi([(f"run/{i:03d}", f"result {i}") for i in range(25)])
    db.put_multi([("config/dt", "0.1"), ("config/steps", "1000")])

    # Five keys after "run/009" that start with "run/", into preallocated buffers.
    buffers = [bytearray(16) for _ in range(5)]
    sizes = db.list_keys(buffers, from_key="run/009", filter="run/")
    print("list_keys:", [bytes(b[:s]) for b, s in zip(buffers, sizes)])

    # Keys and values together; INCLUSIVE starts at from_key itself.
    pairs = [(bytearray(16), bytearray(16)) for _ in range(3)]
    sizes = db.list_keyvals(pairs, "run/020", "run/", mode=Mode.INCLUSIVE)
    print(
        "list_keyvals:", [(bytes(k[:ks]), bytes(v[:vs])) for (k, v), (ks, vs) in zip(pairs, sizes)]
    )

    # Packed: all keys back to back in one buffer; NO_PREFIX strips the filter.
    keys = bytearray(64)
    sizes = db.list_keys_packed(keys, 10, "", "config/", mode=Mode.NO_PREFIX)
    print("config keys:", bytes(keys[: sum(sizes)]), sizes)  # fewer than 10: the end

    # Paging with from_key = the last key seen returns every key exactly once.
    seen, cursor = [], ""
    while True:
        page = [bytearray(16) for _ in range(8)]
        sizes = db.list_keys(page, cursor, "run/")
        seen += [bytes(b[:s]).decode() for b, s in zip(page, sizes)]
        if len(sizes) < len(page):
            break
        cursor = seen[-1]
    print("paged through", len(seen), "keys")

    # iter: a callback per pair, in key order, batch_size pairs per round trip.
    def show(index, key, value):
        print(f"  {index}: {key} = {bytes(value).decode()}")
        return index < 2  # returning False stops the iteration

    db.iter(show, from_key="run/", filter="run/", batch_size=4)

    # Suffix filters and Lua filters.
    # (memoryview keys are only valid inside the callback: copy them)
    out = []
    db.iter(lambda i, k, v: out.append(bytes(k)), filter="5", mode=Mode.SUFFIX, ignore_values=True)
    print("ending in 5:", out)
    # A runtime error fails the whole request, so skip values that are not numbers.
    lua = "local n = tonumber(string.sub(__value__, 8)) return n ~= nil and n % 10 == 0"
    out = []
    db.iter(lambda i, k, v: out.append(k), "", lua, mode=Mode.LUA_FILTER | Mode.FILTER_VALUE)
    print("Lua, result divisible by 10:", out)  # str keys: from_key was a str
