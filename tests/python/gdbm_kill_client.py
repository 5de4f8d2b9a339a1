"""Helper of test_kill_gdbm.py: the writing client, in its own process so
that a call the engine never ends (its provider was killed) costs the test a
restart of this process instead of hanging it.

    python gdbm_kill_client.py PROTOCOL
Reads "ADDRESS SEED ROUND" lines on stdin; for each, writes to that provider
until a call fails, printing "call JSON" (the call's {key: value or null for
an erase}) before every call, "ack" once it is acknowledged and "end" when
the provider is gone.
"""

import json
import random
import sys

from mochi.margo import Engine
from mochi.yokan.client import Client

KEYS = [f"key:{i:05d}" for i in range(3000)]
TIMEOUT_MS = 5000.0


def value(round_, seq, key):
    return f"{round_}.{seq}.{key}." + "v" * (seq % 97)


def calls(rng, round_):
    """The endless sequence of calls: put_multi, put, or a run of erases."""
    seq = 0
    while True:
        seq += 1
        kind = rng.random()
        if kind < 0.45:
            keys = rng.sample(KEYS, rng.randint(20, 400))
            yield {k: value(round_, seq, k) for k in keys}
        elif kind < 0.85:
            k = rng.choice(KEYS)
            yield {k: value(round_, seq, k)}
        else:
            for k in rng.sample(KEYS, rng.randint(1, 50)):
                yield {k: None}


def burst(db, rng, round_):
    for ops in calls(rng, round_):
        print("call", json.dumps(ops), flush=True)
        try:
            if next(iter(ops.values())) is None:
                db.erase(next(iter(ops)), timeout_ms=TIMEOUT_MS)
            elif len(ops) == 1:
                db.put(*next(iter(ops.items())), timeout_ms=TIMEOUT_MS)
            else:
                db.put_multi(list(ops.items()), timeout_ms=TIMEOUT_MS)
        except Exception:
            return  # the provider is gone: this call was never acknowledged
        print("ack", flush=True)


def main():
    with Engine(sys.argv[1], mode=0) as e:
        client = Client(e)
        for line in sys.stdin:
            address, seed, round_ = line.split()
            try:
                db = client.make_database_handle(address, 42)
            except Exception:
                db = None  # killed before the client reached it
            if db is not None:
                burst(db, random.Random(int(seed)), int(round_))
            db = None
            print("end", flush=True)


if __name__ == "__main__":
    main()
