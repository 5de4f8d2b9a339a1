"""Crash consistency of collections: on every persistent backend, a provider
in a child process takes store_multi / update_multi / erase_multi (and single
stores and erases) one after the other while a timer SIGKILLs it at a random
moment. After each kill the provider is restarted on the same files and must
hold exactly what was acknowledged, or that plus the whole of the one call
that was in flight when it died (never a part of it): the same live ids with
the same documents, size() counting exactly them, last_id() the last id
allocated. Ids are never reused: the next store continues after last_id.

KILLS rounds per backend, each bounded in operations and time; the counts are
printed (pytest -s) for the report. Backends without atomic batches run the
same rounds as expected failures.
"""

import os
import random
import signal
import threading

import pytest
from conftest import (
    ATOMIC_BATCHES,
    COLLECTION_BACKENDS,
    PERSISTENT,
    RemoteProvider,
    backend_config,
)
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError

# Backends without atomic batches run too, and report; a torn batch is
# expected of them now and then (README: berkeleydb and a tkrzw tree each
# tore one in a 60-kill soak), so there it is an expected failure.
NOT_ATOMIC = pytest.mark.xfail(
    reason="batches are not atomic on this backend (README, atomic batches)", strict=False
)
BACKENDS = [
    b if b in ATOMIC_BATCHES else pytest.param(b, marks=NOT_ATOMIC)
    for b in COLLECTION_BACKENDS
    if b in PERSISTENT
]
# At least 20; YOKAN_CRASH_KILLS raises it for a longer soak.
KILLS = max(20, int(os.environ.get("YOKAN_CRASH_KILLS", "20")))
# Per round: at most this many calls, and the kill comes within KILL_WINDOW_S.
MAX_OPS = 400
KILL_WINDOW_S = 0.25
# A call to a dead provider fails; the budget only bounds a hang.
CALL_MS = 5000.0


class State:
    """A collection as the client knows it: live documents and the next id."""

    def __init__(self, docs=None, next_id=0):
        self.docs = dict(docs or {})
        self.next_id = next_id

    def copy(self):
        return State(self.docs, self.next_id)

    def __eq__(self, other):
        return self.docs == other.docs and self.next_id == other.next_id

    def describe(self):
        return f"{len(self.docs)} docs, next id {self.next_id}"


def random_op(rng, state):
    """(name, call(coll), the state if the call is applied) for a random call."""
    live = sorted(state.docs)
    after = state.copy()
    # Stores and erases balance once a few thousand documents are live, so
    # that a long soak stays cheap to check.
    kinds = ["store_multi", "update_multi", "erase_multi", "single"]
    kinds.append("erase_multi" if len(live) > 2000 else "store_multi")
    kind = rng.choice(kinds)
    if kind == "update_multi" and live:
        ids = rng.sample(live, min(len(live), rng.randint(1, 20)))
        maybe = rng.randrange(state.next_id)
        if maybe not in state.docs and rng.random() < 0.3:
            ids.append(maybe)  # an erased id comes back to life
        docs = [rng.randbytes(rng.randint(1, 400)) for _ in ids]
        after.docs.update(zip(ids, docs))
        return kind, lambda c: c.update_multi(ids, docs, timeout_ms=CALL_MS), after
    if kind == "erase_multi" and live:
        ids = rng.sample(live, min(len(live), rng.randint(1, 30)))
        ids.append(state.next_id + 5)  # never allocated: ignored
        for i in ids:
            after.docs.pop(i, None)
        return kind, lambda c: c.erase_multi(ids, timeout_ms=CALL_MS), after
    if kind == "single" and live and rng.random() < 0.5:
        victim = rng.choice(live)
        del after.docs[victim]
        return "erase", lambda c: c.erase(victim, timeout_ms=CALL_MS), after
    n = 1 if kind == "single" else rng.randint(2, 40)
    docs = [rng.randbytes(rng.randint(1, 400)) for _ in range(n)]
    first = state.next_id
    after.docs.update(zip(range(first, first + n), docs))
    after.next_id += n

    def store(c):
        ids = c.store_multi(docs, timeout_ms=CALL_MS)
        assert ids == list(range(first, first + n)), f"ids {ids[:3]}... instead of {first}..."

    return "store_multi" if n > 1 else "store", store, after


def observe(coll):
    """(State read back from the provider, its size())."""
    listed = dict(coll.scan(timeout_ms=CALL_MS))
    return State(listed, coll.last_id(timeout_ms=CALL_MS) + 1), coll.size(timeout_ms=CALL_MS)


def connect(engine, server):
    db = Client(engine).make_database_handle(server.address, 42)
    return db, db.open_collection("c")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_mid_batch_keeps_exactly_what_was_acknowledged(tmp_path, backend):
    config = backend_config(backend, tmp_path)
    rng = random.Random(f"crash-{backend}")
    state = State()
    in_flight_applied = 0  # rounds where the call in flight had been applied
    acked_calls = 0
    servers = []
    try:
        servers.append(RemoteProvider("na+sm", config))
        with Engine("na+sm", mode=0) as e:
            db, coll = connect(e, servers[-1])
            db.create_collection("c", timeout_ms=CALL_MS)
            for _ in range(KILLS):
                server = servers[-1]
                killed = threading.Event()

                def kill(proc=server.proc, killed=killed):
                    proc.send_signal(signal.SIGKILL)
                    killed.set()

                timer = threading.Timer(rng.uniform(0.0, KILL_WINDOW_S), kill)
                pending = None
                name = "no call"
                timer.start()
                try:
                    for _ in range(MAX_OPS):
                        name, call, after = random_op(rng, state)
                        pending = after
                        call(coll)
                        state, pending = after, None
                        acked_calls += 1
                except ClientError as err:
                    # Only the kill may fail a call.
                    assert killed.wait(2.0), f"{name} failed before the kill: {err}"
                finally:
                    timer.join()
                    server.stop(signal.SIGKILL)  # if the calls ended before the timer

                servers.append(RemoteProvider("na+sm", config))
                db, coll = connect(e, servers[-1])
                seen, size = observe(coll)
                assert size == len(seen.docs), (
                    f"size() says {size}, {len(seen.docs)} documents are live"
                )
                if pending is not None and seen == pending:
                    state = pending
                    in_flight_applied += 1
                assert seen == state, (
                    f"after a SIGKILL in {name}: read back {seen.describe()}, "
                    f"acknowledged {state.describe()}"
                    + (f" (or with the call in flight {pending.describe()})" if pending else "")
                )
                # Ids are never reused: the next one continues after last_id.
                probe = rng.randbytes(16)
                assert coll.store(probe, timeout_ms=CALL_MS) == state.next_id
                state.docs[state.next_id] = probe
                state.next_id += 1
    finally:
        for s in servers:
            s.stop(signal.SIGKILL)
    print(
        f"{backend}: {KILLS} kills, {acked_calls} calls acknowledged, "
        f"{in_flight_applied} in-flight calls found applied whole, none partly; "
        f"{len(state.docs)} docs, last id {state.next_id - 1}"
    )
