"""Serve one Yokan provider in this process until SIGTERM (benchmark helper).

    python yokan_server.py PROTOCOL [PROVIDER_ID] [CONFIG_JSON]

Prints the engine address on the first line of stdout, then blocks. SIGTERM
finalizes the engine and the process exits 0.
"""

import signal
import sys

from mochi.margo import Engine
from mochi.yokan.server import Provider

DEFAULT_CONFIG = '{"database": {"type": "map"}}'


def main(argv):
    protocol = argv[1] if len(argv) > 1 else "na+sm"
    provider_id = int(argv[2]) if len(argv) > 2 else 42
    config = argv[3] if len(argv) > 3 else DEFAULT_CONFIG
    engine = Engine(protocol)
    provider = Provider(engine=engine, provider_id=provider_id, config=config)
    signal.signal(signal.SIGTERM, lambda *_: engine.finalize())
    print(engine.addr(), flush=True)
    engine.wait_for_finalize()
    del provider
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
