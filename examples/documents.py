"""Document collections: store JSON documents, read them back by id, update,
erase, iterate, and query them on the provider.

python documents.py [ADDRESS]
"""

import sys

from mochi.yokan.client import Exception as YokanError
from mochi.yokan.connect import database
from mochi.yokan.exception import YOKAN_ERR_INVALID_ID

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    if db.collection_exists("people"):  # a shared server may hold an earlier run
        db.drop_collection("people")
    people = db.create_collection("people")

    # Each document gets the next id: 0, 1, 2, ... (never reused).
    ann = people.store({"name": "Ann", "age": 34, "city": "Boston"})
    ids = people.store_multi(
        [
            {"name": "Bob", "age": 28, "city": "Boston"},
            {"name": "Cid", "age": 45, "city": "Chicago", "address": {"zip": "60601"}},
            {"name": "Dee", "age": 31, "city": "Boston"},
        ]
    )
    print("ids:", ann, ids, "size:", people.size(), "last id:", people.last_id())

    # Documents are bytes on the wire; load_json parses them.
    print("document 0:", people.load(ann))
    print("document 2:", people.load_json(ids[1]))

    # Update in place; erased ids stay free forever.
    people.update(ids[0], {"name": "Bob", "age": 29, "city": "Boston"})
    people.erase(ids[2])
    print("after erase:", people.size(), "documents; length of 3:", people.length(3))
    try:
        people.update(100, {"name": "nobody"})
    except YokanError as e:
        assert e.code == YOKAN_ERR_INVALID_ID
        print("update of an id never allocated:", e)

    # Iterate in id order; the callback gets (index, id, memoryview).
    people.iter(lambda i, doc_id, doc: print(f"  #{doc_id}: {bytes(doc).decode()}"))

    # Queries run on the provider, as a Lua filter over the JSON documents.
    print("Boston, over 30:", people.find({"city": "Boston", "age": {"$gt": 30}}))
    print("zip 60601:", people.find({"address.zip": "60601"}))
    print("Bob or Cid:", [d["name"] for _, d in people.find({"name": {"$in": ["Bob", "Cid"]}})])

    db.drop_collection("people")
    print("dropped:", not db.collection_exists("people"))
