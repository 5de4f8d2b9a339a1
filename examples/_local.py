"""Helper for the examples: connect to a provider given on the command line,
or start one in this process when no address is given."""

import contextlib
import sys

from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider


@contextlib.contextmanager
def database(provider_id=42, backend="map"):
    """Yields a Database: on ``sys.argv[1]`` if given, else on a local provider."""
    address = sys.argv[1] if len(sys.argv) > 1 else None
    protocol = address.split("://")[0] if address else "tcp"
    with Engine(protocol) as engine:
        provider = None
        if address is None:
            provider = Provider(
                engine=engine,
                provider_id=provider_id,
                config='{"database": {"type": "%s"}}' % backend,
            )
            address = engine.addr()
        db = Client(engine).make_database_handle(address, provider_id)
        try:
            yield db
        finally:
            del db, provider
