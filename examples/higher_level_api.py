"""Building higher-level APIs: a dict-like store with codecs, and a small
typed experiment log on top of it.

    python higher_level_api.py [ADDRESS]
"""

import sys

from mochi.yokan.connect import database
from mochi.yokan.mapping import KeyValueStore


class ExperimentLog:
    """Parameters and results of runs, as JSON, one prefix per run."""

    def __init__(self, db, run):
        self.params = KeyValueStore(db, prefix=f"{run}/params/", codec="json")
        self.results = KeyValueStore(db, prefix=f"{run}/results/", codec="json")

    def record(self, step, **values):
        if not isinstance(step, int) or step < 0:
            raise ValueError("step must be a non-negative int")
        self.results[f"{step:08d}"] = values

    def history(self):
        return [(int(k), v) for k, v in self.results.items()]


# The provider's address on the command line, or none: then one starts in this process.
with database(sys.argv[1] if len(sys.argv) > 1 else None) as db:
    log = ExperimentLog(db, "run-001")
    log.params["dt"] = 0.01
    log.params["solver"] = {"name": "cg", "tol": 1e-8}
    for step in range(5):
        log.record(step, energy=1.0 / (step + 1))

    print("params:", dict(log.params))
    print("history:", log.history())
    print("runs stored keys:", len(KeyValueStore(db)))

    cache = KeyValueStore(db, prefix="cache/", codec="pickle")
    cache["squares"] = {i: i * i for i in range(5)}
    print("cached:", cache["squares"], "| 'squares' in cache:", "squares" in cache)
    del cache["squares"]
    print("after delete:", list(cache))
