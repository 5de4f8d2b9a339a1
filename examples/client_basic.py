"""Basic operations: put, get, exists, length, erase, count.

python client_basic.py [ADDRESS]   # without ADDRESS a local provider is started
"""

import sys

from mochi.yokan.client import Exception as YokanError
from mochi.yokan.connect import database
from mochi.yokan.exception import YOKAN_ERR_KEY_NOT_FOUND

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    db.put("alpha", "first value")
    db.put(b"beta", b"\x00binary\xff")

    print("alpha =", db.get("alpha"))  # bytes
    buf = bytearray(64)
    size = db.get("alpha", buf)  # into a buffer: returns the size
    print("alpha into a buffer:", bytes(buf[:size]))

    print("exists(beta):", db.exists("beta"))
    print("length(beta):", db.length("beta"))
    print("length(gamma):", db.length("gamma"))  # None: absent
    print("count:", db.count())

    db.erase("alpha")
    try:
        db.get("alpha")
    except YokanError as e:
        assert e.code == YOKAN_ERR_KEY_NOT_FOUND
        print("alpha is gone:", e)
    print("count after erase:", db.count())
