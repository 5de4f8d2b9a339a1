"""One call from nothing to a usable :class:`~mochi.yokan.client.Database`.

``database(address)`` connects to a running provider; ``database()`` with no
address starts an engine and an in-process provider first, which is what a
script, a notebook or a test wants when there is no server to talk to yet.
Either way everything it started stops when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Dict, Iterator, Optional, Union

from mochi.margo import Address, Engine
from mochi.yokan.client import Client, Database
from mochi.yokan.server import Provider

__all__ = ["database"]


@contextlib.contextmanager
def database(
    address: Union[str, Address, None] = None,
    provider_id: int = 42,
    backend: str = "map",
    backend_config: Optional[Dict[str, Any]] = None,
    protocol: Optional[str] = None,
) -> Iterator[Database]:
    """A context manager that yields a :class:`~mochi.yokan.client.Database`
    on ``provider_id`` at ``address``; leaving it stops what it started.

    ``address``: a provider's address string (``"tcp://127.0.0.1:1234"``,
    ``"na+sm://..."``), or ``None`` to start a provider of ``backend`` (with
    ``backend_config``, a dict) in this process. ``protocol`` is the engine's
    protocol; by default the address's own, or ``"tcp"`` (loopback).

    Raises :class:`mochi.yokan.exception.Exception` if the provider cannot be
    reached (``YOKAN_ERR_FROM_MERCURY``, ``YOKAN_ERR_INVALID_PROVIDER``) or
    started (``YOKAN_ERR_INVALID_CONFIG``).
    """
    if protocol is None:
        protocol = str(address).split("://")[0] if address else "tcp"
    with Engine(protocol) as engine:
        provider: Optional[Provider] = None
        if address is None:
            config = {"database": {"type": backend, "config": backend_config or {}}}
            provider = Provider(engine=engine, provider_id=provider_id, config=json.dumps(config))
            address = engine.addr()
        db = Client(engine).make_database_handle(address, provider_id)
        try:
            yield db
        finally:
            del db, provider
