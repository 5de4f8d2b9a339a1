"""The server side: :class:`Provider`."""

import json

from mochi.yokan import _yokan
from mochi.yokan.exception import ServerException as Exception  # noqa: A004

__all__ = ["Provider", "Exception"]


def _native_engine(engine):
    """Accepts a mochi.margo.Engine, anything with a ``mid``, or the native engine."""
    if isinstance(engine, _yokan.Engine):
        return engine
    mid = getattr(engine, "mid", None)
    if callable(mid):
        mid = mid()
    if isinstance(mid, _yokan.Engine):
        return mid
    raise TypeError(f"engine must be a mochi.margo.Engine, not {type(engine).__name__}")


class Provider:
    """Serves one database under ``provider_id`` on ``engine``.

    ``config`` is a JSON string (or a dict), e.g.
    ``'{"database": {"type": "map", "config": {}}}'``. Raises
    :class:`mochi.yokan.server.Exception` with ``YOKAN_ERR_INVALID_CONFIG`` for a
    malformed config or an unknown backend, ``YOKAN_ERR_INVALID_PROVIDER`` when
    the id is taken on this engine.

    Destroying the provider (``del``, ``close()``, leaving a ``with`` block or
    finalizing the engine) stops serving; it never deletes persistent data.
    """

    def __init__(self, engine, provider_id, config):
        if isinstance(config, dict):
            config = json.dumps(config)
        if config is None:
            config = ""
        if not isinstance(config, str):
            raise TypeError("config must be a JSON string or a dict")
        if not isinstance(provider_id, int) or not 0 <= provider_id <= 0xFFFF:
            raise Exception("provider_id must be an integer in [0, 65535]", 3)
        self._native = _yokan.Provider(_native_engine(engine), provider_id, config)

    @property
    def provider_id(self):
        return self._native.provider_id

    @property
    def config(self):
        """The complete configuration, backend defaults filled in, as a dict."""
        return json.loads(self._native.config())

    def close(self):
        """Stops serving now (idempotent)."""
        self._native = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


if __name__ == "__main__":  # python -m mochi.yokan.server ADDRESS -c CONFIG
    import sys

    from mochi.yokan.daemon import main

    sys.exit(main())
