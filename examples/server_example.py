"""A standalone provider: prints its address, serves until Ctrl-C (SIGINT) or SIGTERM.

    python server_example.py [PROTOCOL] [BACKEND]   # e.g. tcp map, na+sm map

Clients in other processes connect with the printed address, e.g.
``python client_basic.py tcp://127.0.0.1:PORT``.
"""

import json
import signal
import sys

from mochi.margo import Engine
from mochi.yokan.server import Provider

protocol = sys.argv[1] if len(sys.argv) > 1 else "tcp"
backend = sys.argv[2] if len(sys.argv) > 2 else "map"
config = {"database": {"type": backend, "config": {}}}

engine = Engine(protocol)
provider = Provider(engine=engine, provider_id=42, config=json.dumps(config))
# A job that a shell script starts in the background inherits SIGINT ignored,
# and Python then leaves it ignored: ask for Ctrl-C's usual meaning anyway.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, lambda *_: engine.finalize())
print(engine.addr(), flush=True)
print("provider 42 serving a", backend, "database; Ctrl-C to stop", file=sys.stderr)
try:
    engine.wait_for_finalize()
except KeyboardInterrupt:
    pass
finally:
    del provider
    engine.finalize()
print("stopped", file=sys.stderr)
