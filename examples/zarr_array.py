"""Zarr: a chunked, compressed float64 array in a Yokan database.

    python zarr_array.py [--size-mib N] [--backend NAME --path PATH] [ADDRESS]

Writes a 2-D float64 array (1 GiB by default, 8192 columns) in 1 MiB chunks
(128 x 1024) compressed with Blosc/Zstd (numcodecs) through
``mochi.yokan.zarr.YokanStore``, then reopens it read-only and reads it back,
checking every value. Needs ``pip install 'mochi-yokan[zarr]'``.
"""

import argparse
import time

import numpy as np
import zarr
from mochi.yokan.connect import database
from mochi.yokan.zarr import YokanStore

COLS = 8192
CHUNKS = (128, 1024)  # 128 x 1024 x 8 bytes = 1 MiB
SLAB_ROWS = 1024  # written and read 64 MiB at a time


def field(start, stop):
    """Rows [start, stop) of a smooth field: compressible, and every value
    depends on its position, so a chunk in the wrong place is caught."""
    rows = np.arange(start, stop, dtype=np.float64)[:, None]
    cols = np.arange(COLS, dtype=np.float64)[None, :]
    return np.sin(rows / 50.0) * np.cos(cols / 300.0) + rows * 1e-3


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("address", nargs="?", help="a running provider (default: start one here)")
parser.add_argument("--size-mib", type=int, default=1024, help="array size (multiple of 8)")
parser.add_argument("--backend", default="map", help="backend of the provider started here")
parser.add_argument("--path", help="its files, for a persistent backend (e.g. rocksdb)")
args = parser.parse_args()
rows = args.size_mib * (1 << 20) // (COLS * 8)
config = {"path": args.path} if args.path else None

with database(args.address, backend=args.backend, backend_config=config) as db:
    store = YokanStore(db, prefix="examples/zarr")
    z = zarr.create_array(
        store,
        name="field",
        shape=(rows, COLS),
        chunks=CHUNKS,
        dtype="f8",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"),
        overwrite=True,
    )
    t0 = time.perf_counter()
    for start in range(0, rows, SLAB_ROWS):
        stop = min(start + SLAB_ROWS, rows)
        z[start:stop] = field(start, stop)
    write_s = time.perf_counter() - t0
    stored = db.length_multi([f"examples/zarr/field/c/{r}/{c}" for r in (0,) for c in (0, 1)])
    print(f"wrote {z.nbytes / 2**20:.0f} MiB as {z.nchunks} chunks in {write_s:.2f} s")
    print(f"first chunks stored compressed: {stored} bytes (raw {CHUNKS[0] * CHUNKS[1] * 8})")

    # Read it back through a read-only store: writes through it would raise.
    reader = zarr.open_array(store.with_read_only(True), path="field", mode="r")
    t0 = time.perf_counter()
    for start in range(0, rows, SLAB_ROWS):
        stop = min(start + SLAB_ROWS, rows)
        if not np.array_equal(reader[start:stop], field(start, stop)):
            raise SystemExit(f"rows {start}..{stop} differ")
    read_s = time.perf_counter() - t0
    print(f"read back and checked {reader.nbytes / 2**20:.0f} MiB in {read_s:.2f} s")
    print("stored bytes:", reader.nbytes_stored(), "ratio:", round(z.nbytes / z.nbytes_stored(), 2))
