"""Requests that once cost the provider far more than their size (found while
fuzzing the wire protocol, tests/fuzz): each must be answered promptly and
leave the provider serving others. The provider runs in a child process so
that a regression cannot wedge the test process itself."""

import time

from mochi.margo import Engine
from mochi.yokan.client import Client

UPDATE_NEW = 32768


def test_doc_update_of_many_new_ids_is_answered_promptly(remote):
    # Counting each absent id once used to compare it with every id before it:
    # 300,000 new ids held the collection's exclusive lock for minutes.
    server = remote("na+sm")
    n = 300_000
    with Engine("na+sm") as e:
        db = Client(e).make_database_handle(server.address, 42)
        coll = db.create_collection("c")
        start = time.monotonic()
        coll.update_multi(range(n), [b"x"] * n, mode=UPDATE_NEW, timeout_ms=60_000)
        elapsed = time.monotonic() - start
        print(f"update of {n} new ids: {elapsed:.2f} s")
        assert coll.size() == n and coll.last_id() == n - 1
        # A new id repeated in one batch still counts once.
        coll.update_multi([n, n, n + 1, n], [b"a", b"b", b"c", b"d"], mode=UPDATE_NEW)
        assert coll.size() == n + 2
        assert coll.load(n) == b"d"
        db.put("other", "still served", timeout_ms=10_000)
        del coll, db
