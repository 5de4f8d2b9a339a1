"""Helpers for the authentication and bootstrap-abuse tests: a provider in a
child process whose engine takes a config, and a client engine."""

import json
import sys

from conftest import ChildServer

# Serves one "map" provider (id 42) on an engine with the given config until
# SIGTERM; prints the address first.
SERVE = r"""
import json, signal, sys
from mochi.margo import Engine
from mochi.yokan.server import Provider
engine = Engine(sys.argv[1], config=json.loads(sys.argv[2]))
provider = Provider(engine=engine, provider_id=42, config='{"database": {"type": "map"}}')
signal.signal(signal.SIGTERM, lambda *_: engine.finalize())
print(engine.addr(), flush=True)
engine.wait_for_finalize()
del provider
"""


class AuthServer(ChildServer):
    """A map provider (id 42) in a child process, its engine configured by `engine_config`."""

    def __init__(self, protocol, engine_config, prefix=()):
        super().__init__(
            [*prefix, sys.executable, "-c", SERVE, protocol, json.dumps(engine_config)]
        )
