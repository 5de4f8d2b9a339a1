"""Test helper: serve one provider in this process until SIGTERM.

    python serve.py PROTOCOL CONFIG_JSON [PROVIDER_ID]
Prints the engine address on the first line of stdout.
"""

import signal
import sys

from mochi.margo import Engine
from mochi.yokan.server import Provider

engine = Engine(sys.argv[1])
provider = Provider(
    engine=engine, provider_id=int(sys.argv[3]) if len(sys.argv) > 3 else 42, config=sys.argv[2]
)
signal.signal(signal.SIGTERM, lambda *_: engine.finalize())
print(engine.addr(), flush=True)
engine.wait_for_finalize()
del provider
