"""Test helper for the fault tests: one provider (map backend, id 42) in this
process until SIGTERM, on an engine with a given config.

    python fault_server.py ADDRESS ENGINE_CONFIG_JSON
Prints the engine address on the first line of stdout.
"""

import signal
import sys

from mochi.margo import Engine
from mochi.yokan.server import Provider

engine = Engine(sys.argv[1], config=sys.argv[2] if len(sys.argv) > 2 else "")
provider = Provider(engine=engine, provider_id=42, config='{"database": {"type": "map"}}')
signal.signal(signal.SIGTERM, lambda *_: engine.finalize())
print(engine.addr(), flush=True)
engine.wait_for_finalize()
del provider
