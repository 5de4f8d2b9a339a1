"""A client of a group that keeps writing while the group grows (run by
test_rebalance.py): puts, overwrites and erases its own keys with known
values, and checks every read it makes (its own last write; the preloaded
keys) as it goes.

    python rebalance_writer.py GROUP_FILE WRITER_ID KEYS BASE_KEYS OUT_FILE STOP_FILE

Prints "ready" after its first checked write; stops when STOP_FILE exists
(or after a bounded number of operations / 90 s), then writes to OUT_FILE
the last acknowledged value of each of its keys (null: erased or never
written) and how many operations it made while the group was moving. Any
error or wrong read: a message on stderr and exit code 1."""

import json
import os
import random
import sys
import time

from mochi.yokan.group import Group

group_file, writer, nkeys, nbase, out_file, stop_file = sys.argv[1:]
writer, nkeys, nbase = int(writer), int(nkeys), int(nbase)
rng = random.Random(writer)
expected = {}
ops = moving_ops = 0
deadline = time.monotonic() + 90


def key(j):
    return f"w{writer}-{j:05d}"


def fail(message):
    print(f"writer {writer}: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


with Group.from_file(group_file, wait_s=30) as g:
    db = g.database(1)
    versions = {db.version}
    while not os.path.exists(stop_file) and time.monotonic() < deadline and ops < 200_000:
        r = rng.random()
        if r < 0.5:
            j = rng.randrange(nkeys)
            value = f"{writer}:{j}:{ops}".encode()
            db.put(key(j), value)
            expected[j] = value
        elif r < 0.7:
            js = rng.sample(range(nkeys), 10)
            values = [f"{writer}:{j}:{ops}:m".encode() for j in js]
            db.put_multi([(key(j), v) for j, v in zip(js, values)])
            expected.update(zip(js, values))
        elif r < 0.8:
            j = rng.randrange(nkeys)
            db.erase(key(j))
            expected[j] = None
        else:
            js = rng.sample(range(nkeys), 5)
            db.erase_multi([key(j) for j in js])
            expected.update((j, None) for j in js)
        # Reads check themselves: our own last write, and the preloaded keys.
        j = rng.randrange(nkeys)
        got = db.get_multi([key(j)])[0]
        if got != expected.get(j):
            fail(f"read {key(j)!r}: {got!r}, expected {expected.get(j)!r} (view {db.version})")
        if db.exists(key(j)) != (expected.get(j) is not None):
            fail(f"exists {key(j)!r} is wrong (view {db.version})")
        b = rng.randrange(nbase)
        if db.get(f"base-{b:06d}") != f"v{b}".encode():
            fail(f"preloaded key base-{b:06d} is wrong (view {db.version})")
        ops += 1
        versions.add(db.version)
        if db.moving:
            moving_ops += 1
        if ops == 1:
            print("ready", flush=True)

with open(out_file, "w") as f:
    json.dump(
        {
            "expected": {
                key(j): (v.decode() if v is not None else None) for j, v in expected.items()
            },
            "ops": ops,
            "moving_ops": moving_ops,
            "versions": sorted(versions),
        },
        f,
    )
