"""numpy: arrays go straight from and into numpy memory.

python numpy_example.py [ADDRESS]
"""

import sys

import numpy as np
from mochi.yokan.arrays import array_info, get_array, put_array
from mochi.yokan.connect import database

# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    rng = np.random.default_rng(7)
    field = rng.standard_normal((256, 512)).astype(np.float32)

    # Raw bytes in, raw bytes out, into a preallocated array of the same layout.
    db.put("field/raw", field)
    out = np.empty_like(field)
    db.get("field/raw", out)
    print("raw round trip equal:", np.array_equal(field, out))

    # With dtype and shape stored alongside: no need to know them to load.
    put_array(db, "field/T", field)
    print("stored as:", array_info(db, "field/T"))
    loaded = get_array(db, "field/T")  # a new array
    get_array(db, "field/T", out=out)  # or into an existing one
    print("loaded", loaded.dtype, loaded.shape, "equal:", np.array_equal(field, loaded))

    # Slices of a bigger array as keys and destinations (contiguous views).
    steps = np.zeros((4, 1000))
    for t in range(4):
        db.put(f"step/{t}", np.full(1000, t, dtype=np.float64))
    for t in range(4):
        db.get(f"step/{t}", steps[t])  # each row written in place
    print("row means:", steps.mean(axis=1))
